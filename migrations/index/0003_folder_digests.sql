-- What each issue folder held when the index last agreed with it: a start-up lists and
-- stats every file as before, but compares a folder with the index by one digest
-- instead of row by row, and reads the rows of only the folders that differ.

CREATE TABLE index_folders (
    dir    TEXT PRIMARY KEY NOT NULL,   -- '.floom/issues/' (the flat files) or '.floom/issues/012/'
    files  INTEGER NOT NULL,            -- the rows index_files holds in it
    digest TEXT NOT NULL                -- hash of those rows' paths, sizes and mtimes
) WITHOUT ROWID;

-- Any change to a folder's rows forgets its digest, in the same transaction, whatever
-- code makes it: a digest that is there always describes the rows as they are.
-- `rtrim(p, replace(p, '/', ''))` is the folder of path p, with its trailing slash.
CREATE TRIGGER index_files_inserted AFTER INSERT ON index_files BEGIN
    DELETE FROM index_folders WHERE dir = rtrim(NEW.path, replace(NEW.path, '/', ''));
END;
CREATE TRIGGER index_files_updated AFTER UPDATE ON index_files BEGIN
    DELETE FROM index_folders
    WHERE dir IN (rtrim(OLD.path, replace(OLD.path, '/', '')),
                  rtrim(NEW.path, replace(NEW.path, '/', '')));
END;
CREATE TRIGGER index_files_deleted AFTER DELETE ON index_files BEGIN
    DELETE FROM index_folders WHERE dir = rtrim(OLD.path, replace(OLD.path, '/', ''));
END;
