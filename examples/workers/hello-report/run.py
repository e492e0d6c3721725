"""Example script worker: read inputs.json, write out/report.md and result.json."""
import json
import pathlib

FACTS = {
    "git": "Git stores snapshots, not diffs; every commit names its whole tree.",
    "sqlite": "SQLite is a library, not a server: the database is one file.",
    "rust": "Rust checks ownership at compile time, so there is no garbage collector.",
}

inputs = json.loads(pathlib.Path("inputs.json").read_text())
name = inputs["name"]
topic = inputs.get("topic") or "git"

report = f"# Hello, {name}\n\nYou asked about **{topic}**.\n\n{FACTS.get(topic, 'No facts on that yet.')}\n"
out = pathlib.Path("out")
out.mkdir(exist_ok=True)
(out / "report.md").write_text(report)
print(f"wrote a report on {topic} for {name}")

pathlib.Path("result.json").write_text(json.dumps({
    "status": "success",
    "outputs": {"report": "out/report.md", "word_count": len(report.split())},
}))
