//! The benchmark program: generates workspaces of 1k/10k/100k issues, starts floom on
//! loopback in this process, drives it with concurrent clients, and prints one table.
//! The naive approach (parse every issue file per list request, as upstream does) runs
//! beside it and the ratio is printed.
//!
//! `cargo bench` runs every size; `FLOOM_BENCH_SIZES=1000,10000` picks sizes,
//! `FLOOM_BENCH_WORKERS` the number of generated workers (default 1000, 0 skips them),
//! `FLOOM_BENCH_RUNS` the number of stored runs (default 100000, 0 skips the run rows)
//! `FLOOM_BENCH_SECONDS` the load duration per row (default 3), and
//! `FLOOM_BENCH_UPSTREAM` the sizes of upstream-flat workspaces written before and after
//! `floom relayout` (default: the largest of the sizes; 0 skips them).
//! `FLOOM_BENCH_GIT_CACHE_MB` sets libgit2's object cache after floom bounds it (256 is
//! libgit2's default), to measure what the bound does. `FLOOM_BENCH_REPLICAS=0` skips the
//! rows of servers sharing a git remote. `FLOOM_BENCH_SOAK` is the length in seconds of
//! a soak of writes at each size (default 0: none) against `floom serve` in a process
//! of its own, its resident memory sampled every second (the samples go to stderr).
//! `FLOOM_BENCH_ONLY_WRITES=1` keeps, for each size, only the index build, the warm start
//! and the write rows (create, comment, the concurrent burst, and the soak if asked): a minute at 100k issues
//! with `FLOOM_BENCH_DIR`, for iterating on the write path.
//! `FLOOM_BENCH_ONLY_READS=1` keeps, for each size, only the index build, the warm start,
//! the read rows, and `floom serve` in a process of its own on the same data (its start to
//! `/healthz`, its resident memory when ready and after list and search load): for
//! iterating on the read side at 1M issues.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floom::AppState;
use floom::config::Config;
use floom::index::Index;
use floom::index::watcher;
use floom::workspace::Workspace;
use floom::workspace::issue_file::{Comment, IssueDoc, IssueMeta};
use floom::workspace::layout;

const LABELS: [&str; 8] = [
    "bug",
    "feature",
    "docs",
    "worker",
    "ui",
    "infra",
    "needs-attention",
    "good-first-issue",
];
const WORDS: [&str; 16] = [
    "inbox", "digest", "schedule", "approval", "timeout", "webhook", "secret", "context", "gmail",
    "slack", "retry", "label", "thread", "summary", "invoice", "report",
];
const CONCURRENCY: u64 = 8;
/// Concurrent writers of the burst row.
const BURST_CLIENTS: u64 = 16;

/// A small deterministic generator, so every run builds the same workspace.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// `n` issues; in floom's fan-out folders, or `flat` in `.floom/issues/` as upstream
/// writes them.
fn generate(ws: &Path, n: u64, flat: bool) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for num in 1..=n {
        let id = layout::format_id(num);
        let ts = format!(
            "2026-{:02}-{:02}T{:02}:00:00.{:06}+00:00",
            1 + num % 12,
            1 + num % 28,
            num % 24,
            num % 1_000_000
        );
        let mut labels: Vec<String> = Vec::new();
        for _ in 0..(rng.next() % 3) {
            let l = rng.pick(&LABELS).to_string();
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        let title = format!(
            "{} {} {} fails",
            rng.pick(&WORDS),
            rng.pick(&WORDS),
            rng.pick(&WORDS)
        );
        let body = format!(
            "The {} worker hit a {} on the {} step.",
            rng.pick(&WORDS),
            rng.pick(&WORDS),
            rng.pick(&WORDS)
        );
        let doc = IssueDoc {
            meta: IssueMeta {
                id: Some(id.clone()),
                status: Some(
                    if rng.next().is_multiple_of(3) {
                        "closed"
                    } else {
                        "open"
                    }
                    .into(),
                ),
                title,
                labels,
                created_by: Some("local-user".into()),
                created_at: Some(ts.clone()),
                updated_at: Some(ts.clone()),
                ..Default::default()
            },
            body,
        };
        let rel = if flat {
            layout::canonical_paths(num)[0].clone()
        } else {
            layout::new_issue_path(num)
        };
        let path = ws.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, doc.render()).unwrap();
        if num.is_multiple_of(5) {
            let c = Comment {
                id: format!("cmt_{num:016x}"),
                body: format!("Seen again with {}", WORDS[(num % 16) as usize]),
                created_by: Some("local-user".into()),
                created_at: Some(ts),
            };
            std::fs::write(ws.join(layout::comments_path(&rel)), c.to_line()).unwrap();
        }
    }
    git(ws, &["add", "-A"]);
    git(ws, &["commit", "-qm", "bench: generated issues"]);
}

/// Generate the workspace into `dest`; with `FLOOM_BENCH_DIR` set, generate it once
/// there and hard-link a copy, so repeated runs skip the generation and its big commit
/// (safe: git and floom replace files by rename, never in place).
fn prepare_workspace(dest: &Path, n: u64, flat: bool) {
    let Some(cache) = std::env::var_os("FLOOM_BENCH_DIR") else {
        Workspace::open(dest, None, Default::default()).unwrap();
        generate(dest, n, flat);
        return;
    };
    let kind = if flat { "flat" } else { "workspace" };
    let template = Path::new(&cache).join(format!("{kind}-{n}"));
    if !template.join(".git").exists() {
        let _ = std::fs::remove_dir_all(&template);
        Workspace::open(&template, None, Default::default()).unwrap();
        generate(&template, n, flat);
    }
    std::fs::remove_dir_all(dest).unwrap();
    let ok = std::process::Command::new("cp")
        .arg("-al")
        .arg(&template)
        .arg(dest)
        .status()
        .unwrap();
    assert!(ok.success(), "copying the cached workspace");
}

/// Upstream's way: read and parse every issue file, filter, sort, page.
fn naive_list(ws: &Path, status: &str, label: &str, limit: usize) -> usize {
    let mut hits = Vec::new();
    for f in floom::index::derive::scan(ws) {
        if f.kind != layout::FileKind::Issue {
            continue;
        }
        let Ok(bytes) = std::fs::read(ws.join(&f.path)) else {
            continue;
        };
        let Ok(doc) = IssueDoc::parse(&bytes) else {
            continue;
        };
        if doc.meta.status.as_deref().unwrap_or("open") == status
            && doc.meta.labels.iter().any(|l| l == label)
        {
            hits.push((f.path.clone(), doc));
        }
    }
    hits.sort_by(|a, b| a.0.cmp(&b.0));
    hits.into_iter().take(limit).count()
}

struct Stats {
    p50: Duration,
    p99: Duration,
    rps: f64,
    count: usize,
}

fn stats(mut lat: Vec<Duration>, wall: Duration) -> Stats {
    lat.sort();
    // No samples (a server in another process records none): zeros.
    let at = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        rps: lat.len() as f64 / wall.as_secs_f64(),
        count: lat.len(),
    }
}

/// Handler times as the server sees them: from the request entering the router to
/// the response leaving it (no socket, no client).
#[derive(Clone, Default)]
struct ServerTimes(Arc<Mutex<Vec<Duration>>>);

impl ServerTimes {
    fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

async fn get_json(client: &reqwest::Client, url: String) -> serde_json::Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// One line of the table.
struct Row {
    /// What the workspace holds: `10000 issues`, `1000 workers`.
    size: String,
    work: &'static str,
    client: Option<Stats>,
    server: Option<Stats>,
    single: Option<Duration>,
    note: String,
}

/// Drive `make_req` from `clients` concurrent clients for `secs`; client and server
/// latencies.
async fn load<F>(times: &ServerTimes, clients: u64, secs: f64, make_req: F) -> (Stats, Stats)
where
    F: Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let client = reqwest::Client::new();
    let make_req = Arc::new(make_req);
    times.take();
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|w| {
            let client = client.clone();
            let make_req = make_req.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = w * 1_000_000;
                while Instant::now() < until {
                    let t = Instant::now();
                    let res = make_req(&client, i).send().await.unwrap();
                    assert!(res.status().is_success(), "{}", res.status());
                    res.bytes().await.unwrap();
                    lat.push(t.elapsed());
                    i += 1;
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let wall = start.elapsed();
    (stats(all, wall), stats(times.take(), wall))
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A row's cells after its work: client p50, p99, server p50, p99, single run, note.
fn row_cells(
    client: &Option<Stats>,
    server: &Option<Stats>,
    single: Option<Duration>,
    note: &str,
) -> String {
    let opt =
        |s: &Option<Stats>, f: fn(&Stats) -> Duration| s.as_ref().map_or("-".into(), |s| ms(f(s)));
    format!(
        "{} | {} | {} | {} | {} | {}",
        opt(client, |s| s.p50),
        opt(client, |s| s.p99),
        opt(server, |s| s.p50),
        opt(server, |s| s.p99),
        single.map_or("-".into(), ms),
        note
    )
}

/// A row writer for one workspace's part of the table.
fn table(
    rows: &mut Vec<Row>,
    size: String,
) -> impl FnMut(&'static str, Option<Stats>, Option<Stats>, Option<Duration>, String) + '_ {
    move |work, client, server, single, note| {
        // As it comes, too: a long run that fails later keeps what it measured.
        eprintln!(
            "[{size}] {work}: {}",
            row_cells(&client, &server, single, &note)
        );
        rows.push(Row {
            size: size.clone(),
            work,
            client,
            server,
            single,
            note,
        })
    }
}

/// Serve `state` on a loopback port, timing each request inside the router; the base
/// URL and the recorded server times.
async fn serve_recorded(state: &AppState) -> (String, ServerTimes) {
    let times = ServerTimes::default();
    let recorder = times.clone();
    let app = floom::app(state.clone()).layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let recorder = recorder.clone();
            async move {
                let t = Instant::now();
                let res = next.run(req).await;
                recorder.0.lock().unwrap().push(t.elapsed());
                res
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, app).into_future());
    (base, times)
}

/// [`load`] of GET requests from 8 clients: `base` + `path(i)` for the i-th request.
async fn load_gets(
    times: &ServerTimes,
    secs: f64,
    base: &str,
    path: impl Fn(u64) -> String + Send + Sync + 'static,
) -> (Stats, Stats) {
    let b = base.to_string();
    load(times, CONCURRENCY, secs, move |c, i| {
        c.get(format!("{b}{}", path(i)))
    })
    .await
}

/// The read rows under load: a filtered list, a full-text page, one issue. Returns the
/// list's server p50 (for the naive ratio).
async fn read_rows(
    base: &str,
    times: &ServerTimes,
    n: u64,
    secs: f64,
    row: &mut impl FnMut(&'static str, Option<Stats>, Option<Stats>, Option<Duration>, String),
) -> Duration {
    let (c, s) = load_gets(times, secs, base, |_| {
        "/workspace/issues?status=open&label=bug&limit=50".into()
    })
    .await;
    let list_p50 = s.p50;
    let note = format!("{:.0} req/s", c.rps);
    row("list status+label, 50 rows", Some(c), Some(s), None, note);

    let (c, s) = load_gets(times, secs, base, |i| {
        format!("/workspace/issues?q={}&limit=50", WORDS[(i % 16) as usize])
    })
    .await;
    let note = format!("{:.0} req/s", c.rps);
    row("full-text search, 50 rows", Some(c), Some(s), None, note);

    let (c, s) = load_gets(times, secs, base, move |i| {
        format!("/workspace/issues/{}", layout::format_id(1 + i % n))
    })
    .await;
    let note = format!("{:.0} req/s", c.rps);
    row("get one issue", Some(c), Some(s), None, note);
    list_p50
}

async fn bench_size(n: u64, secs: f64, rows: &mut Vec<Row>, dir: &Path) {
    let mut row = table(rows, format!("{n} issues"));
    let config = Config::under(dir);
    config.paths.create_dirs().unwrap();
    let t = Instant::now();
    prepare_workspace(&config.paths.workspace, n, false);
    let ws = Workspace::open(&config.paths.workspace, None, Default::default()).unwrap();
    set_git_cache_for_bench();
    eprintln!("[{n}] workspace ready in {:.1}s", t.elapsed().as_secs_f64());

    // CPU time beside the wall time: on a machine shared with other work, the part of
    // a start that is this process's own.
    let cpu_note = |before: Duration| {
        format!(
            "{:.1} s of CPU (whole process)",
            (cpu_time() - before).as_secs_f64()
        )
    };
    let (t, cpu) = (Instant::now(), cpu_time());
    let index = Index::open(&config.paths.index_db, ws.root(), &config.paths.workers_rel)
        .await
        .unwrap();
    index.reconcile(&|_, _| {}).await.unwrap();
    row(
        "cold index rebuild",
        None,
        None,
        Some(t.elapsed()),
        cpu_note(cpu),
    );
    index.close().await;
    drop(index);

    let (t, cpu) = (Instant::now(), cpu_time());
    let state = AppState::open(config.clone(), &|_, _| {}).await.unwrap();
    row(
        "warm start (index up to date)",
        None,
        None,
        Some(t.elapsed()),
        cpu_note(cpu),
    );
    // The start-up reconcile alone, again and again: its spread on a loaded machine.
    let mut lat = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        state.index.reconcile(&|_, _| {}).await.unwrap();
        lat.push(t.elapsed());
    }
    let (best, worst) = (*lat.iter().min().unwrap(), *lat.iter().max().unwrap());
    row(
        "warm reconcile (index up to date), 5 times",
        None,
        None,
        Some(stats(lat, Duration::from_secs(1)).p50),
        format!("median; best {}, worst {}", ms(best), ms(worst)),
    );
    let _watch = watcher::spawn(state.index.clone()).unwrap();
    let (base, times) = serve_recorded(&state).await;
    let only_writes = std::env::var("FLOOM_BENCH_ONLY_WRITES").is_ok_and(|v| v != "0");
    let list_p50 = if only_writes {
        Duration::ZERO
    } else {
        read_rows(&base, &times, n, secs, &mut row).await
    };
    if std::env::var("FLOOM_BENCH_ONLY_READS").is_ok_and(|v| v != "0") {
        row(
            "resident memory",
            None,
            None,
            None,
            format!("{:.0} MB (whole bench process)", rss_mb()),
        );
        state.index.close().await;
        serve_reads_rows(&config, secs, &mut row).await;
        return;
    }

    // Writes are serialised by the single git writer: one client shows a write's own
    // latency; more clients would only show the queue in front of it.
    let rss_before_writes = rss_mb();
    let b = base.clone();
    let (c, s) = load(&times, 1, secs, move |c, i| {
        c.post(format!("{b}/workspace/issues"))
            .json(&serde_json::json!({"title": format!("bench {i}"), "labels": ["bench"]}))
    })
    .await;
    let note = format!("{:.0} req/s, 1 client", c.rps);
    let created = c.count;
    row(
        "create issue (commit included)",
        Some(c),
        Some(s),
        None,
        note,
    );

    let b = base.clone();
    let (c, s) = load(&times, 1, secs, move |c, i| {
        c.post(format!(
            "{b}/workspace/issues/{}/comments",
            layout::format_id(1 + (i * 7919) % n)
        ))
        .json(&serde_json::json!({"body": format!("bench comment {i}")}))
    })
    .await;
    let note = format!("{:.0} req/s, 1 client", c.rps);
    let mut writes = created + c.count;
    row("comment (commit included)", Some(c), Some(s), None, note);

    // A burst of agents filing issues at once: 16 clients, every create its own commit.
    let moves_before = branch_moves(ws.root());
    let cpu_before = cpu_time();
    eprintln!("[{n}] burst of {BURST_CLIENTS} writers for {secs} s");
    let b = base.clone();
    let (c, s) = load(&times, BURST_CLIENTS, secs, move |c, i| {
        c.post(format!("{b}/workspace/issues"))
            .json(&serde_json::json!({"title": format!("burst {i}"), "labels": ["bench"]}))
    })
    .await;
    writes += c.count;
    let cpu = cpu_time() - cpu_before;
    let batches = branch_moves(ws.root()) - moves_before;
    let note = format!(
        "{:.0} creates/s, {BURST_CLIENTS} clients (group commit: {batches} batches, {:.1} commits each; {:.2} ms of CPU per create, whole process)",
        c.rps,
        c.count as f64 / batches.max(1) as f64,
        cpu.as_secs_f64() * 1000.0 / c.count.max(1) as f64
    );
    row(
        "create issue, concurrent writers",
        Some(c),
        Some(s),
        None,
        note,
    );
    row(
        "resident memory after the writes",
        None,
        None,
        None,
        format!(
            "{:.0} MB after {writes} writes ({rss_before_writes:.0} MB before them; whole bench process); libgit2 object cache {}; {}",
            rss_mb(),
            git_cache(),
            heap_note()
        ),
    );

    if only_writes {
        state.index.close().await;
        soak_rows(&config, n, &mut row).await;
        return;
    }

    // External edit → visible in the list.
    let client = reqwest::Client::new();
    let mut lat = Vec::new();
    for i in 0..20u64 {
        let num = n + 1_000_000 + i;
        let rel = format!("{}/ISSUE-{num}.md", layout::ISSUES_DIR);
        let doc = IssueDoc {
            meta: IssueMeta {
                title: format!("external {i}"),
                labels: vec![format!("ext{i}")],
                ..Default::default()
            },
            body: String::new(),
        };
        let t = Instant::now();
        std::fs::write(ws.root().join(&rel), doc.render()).unwrap();
        loop {
            let r: serde_json::Value =
                get_json(&client, format!("{base}/workspace/issues?label=ext{i}")).await;
            if r["total"] == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lat.push(t.elapsed());
    }
    row(
        "external edit visible in list",
        Some(stats(lat, Duration::from_secs(1))),
        None,
        None,
        "file write → list shows it".into(),
    );
    row(
        "resident memory",
        None,
        None,
        None,
        format!("{:.0} MB (whole bench process)", rss_mb()),
    );

    let reps = if n >= 100_000 { 2 } else { 5 };
    let mut lat = Vec::new();
    let root = ws.root().to_path_buf();
    for _ in 0..reps {
        let t = Instant::now();
        let root = root.clone();
        tokio::task::spawn_blocking(move || naive_list(&root, "open", "bug", 50))
            .await
            .unwrap();
        lat.push(t.elapsed());
    }
    let naive = stats(lat, Duration::from_secs(1)).p50;
    let ratio = naive.as_secs_f64() / list_p50.as_secs_f64();
    row(
        "naive list (parse every file), one request",
        None,
        None,
        Some(naive),
        format!("floom (server p50) is {ratio:.0}x faster"),
    );
    state.issues.workspace.flush_git_index().await.unwrap();
    row(
        ".git after the writes",
        None,
        None,
        None,
        git_size_note(ws.root(), writes),
    );
    state.index.close().await;
    soak_rows(&config, n, &mut row).await;
}

/// The soak's rows, when `FLOOM_BENCH_SOAK` asks for one.
async fn soak_rows(
    config: &Config,
    n: u64,
    row: &mut impl FnMut(&'static str, Option<Stats>, Option<Stats>, Option<Duration>, String),
) {
    let soak_secs: f64 = std::env::var("FLOOM_BENCH_SOAK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    if soak_secs > 0.0 {
        let (rss, git) = soak(config, n, soak_secs).await;
        row("soak: `floom serve` alone, writes", None, None, None, rss);
        row(".git after the soak", None, None, None, git);
    }
}

/// A memory figure of process `pid` from `/proc/PID/status` (`VmRSS`, its peak `VmHWM`,
/// or its anonymous and file-backed parts, `RssAnon` and `RssFile`), in MB.
fn process_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// One sample of a soak: seconds in, writes done, and the resident set of the server in
/// MB: all of it, its anonymous part (the heap) and its file-backed part (the binary,
/// mapped pack files), with how many pack files it maps and how many of those git
/// has since deleted.
#[derive(Clone, Copy)]
struct MemorySample {
    secs: f64,
    writes: usize,
    rss: f64,
    anon: f64,
    file: f64,
    packs: usize,
    deleted_packs: usize,
}

fn memory_sample(pid: u32, secs: f64, writes: usize) -> MemorySample {
    let field = |name: &str| process_mb(pid, name);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let packs: Vec<&str> = maps.lines().filter(|l| l.contains(".pack")).collect();
    MemorySample {
        secs,
        writes,
        rss: field("VmRSS:"),
        anon: field("RssAnon:"),
        file: field("RssFile:"),
        packs: packs.len(),
        deleted_packs: packs.iter().filter(|l| l.ends_with("(deleted)")).count(),
    }
}

/// The least-squares slope of `mb` against writes, in KB per 1000 writes.
fn kb_per_1000_writes(samples: &[MemorySample], mb: impl Fn(&MemorySample) -> f64) -> f64 {
    let n = samples.len() as f64;
    let mean_x = samples.iter().map(|s| s.writes as f64).sum::<f64>() / n;
    let mean_y = samples.iter().map(&mb).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for s in samples {
        let dx = s.writes as f64 - mean_x;
        sxy += dx * (mb(s) - mean_y);
        sxx += dx * dx;
    }
    if sxx > 0.0 {
        sxy / sxx * 1024.0 * 1000.0
    } else {
        0.0
    }
}

/// `floom serve` in a process of its own, on a copy of this size's data folder (its
/// index up to date), taking creates and comments from one client for `secs` while
/// its resident memory is sampled every second (to stderr). Notes on the memory (with
/// its slope over the second half, after warm-up) and on `.git` after it.
async fn soak(config: &Config, n: u64, secs: f64) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, base, _) = spawn_serve(config, dir.path()).await;
    let pid = server.id();
    let client = reqwest::Client::new();
    let ready = memory_sample(pid, 0.0, 0);
    let samples: Arc<Mutex<Vec<MemorySample>>> = Arc::default();
    let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let sampler = {
        let (samples, writes) = (samples.clone(), writes.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while Instant::now() < until {
                tick.tick().await;
                let w = writes.load(std::sync::atomic::Ordering::Relaxed);
                let s = memory_sample(pid, start.elapsed().as_secs_f64(), w);
                eprintln!(
                    "[soak {n}] {:.0}s {} writes RSS {:.1} MB (anon {:.1}, file {:.1}); {} pack maps, {} of deleted packs",
                    s.secs, s.writes, s.rss, s.anon, s.file, s.packs, s.deleted_packs
                );
                samples.lock().unwrap().push(s);
            }
        })
    };
    let mut i = 0u64;
    while Instant::now() < until {
        let req = if i.is_multiple_of(2) {
            client
                .post(format!("{base}/workspace/issues"))
                .json(&serde_json::json!({"title": format!("soak {i}"), "labels": ["soak"]}))
        } else {
            client
                .post(format!(
                    "{base}/workspace/issues/{}/comments",
                    layout::format_id(1 + (i * 7919) % n)
                ))
                .json(&serde_json::json!({"body": format!("soak comment {i}")}))
        };
        let res = req.send().await.unwrap();
        assert!(res.status().is_success(), "{}", res.status());
        res.bytes().await.unwrap();
        writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        i += 1;
    }
    sampler.await.unwrap();
    let peak = process_mb(pid, "VmHWM:");
    // SAFETY: a signal to the child started above.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    server.wait().unwrap();
    let samples = samples.lock().unwrap().clone();
    let done = writes.load(std::sync::atomic::Ordering::Relaxed);
    // After warm-up: the second half, where growth shows as a slope.
    let half = &samples[samples.len() / 2..];
    let slope = |mb: fn(&MemorySample) -> f64| kb_per_1000_writes(half, mb);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    let (last, mid) = (at(1.0), at(0.5));
    let rss = format!(
        "{done} writes in {secs:.0} s; RSS {:.0} MB when ready, {:.0} / {:.0} / {:.0} / {:.0} MB at 0/25/50/100 % of the soak, peak {peak:.0} MB; \
         at 50 / 100 %: anon {:.0} / {:.0} MB, file {:.0} / {:.0} MB; \
         second half (writes {}-{}), KB per 1000 writes: RSS {:+.0}, anon {:+.0}, file {:+.0}; \
         at the end {} pack maps, {} of deleted packs",
        ready.rss,
        at(0.0).rss,
        at(0.25).rss,
        mid.rss,
        last.rss,
        mid.anon,
        last.anon,
        mid.file,
        last.file,
        half[0].writes,
        last.writes,
        slope(|s| s.rss),
        slope(|s| s.anon),
        slope(|s| s.file),
        last.packs,
        last.deleted_packs,
    );
    (
        rss,
        git_size_note(&Config::under(dir.path()).paths.workspace, done),
    )
}

/// `floom serve` in a process of its own on a copy of `config`'s data folder (the
/// workspace hard-linked, the index copied, so it starts warm) under `dir`; waits for
/// `/healthz`. The child, its base URL and how long it took to answer.
async fn spawn_serve(config: &Config, dir: &Path) -> (std::process::Child, String, Duration) {
    let copy = Config::under(dir);
    let ok = std::process::Command::new("cp")
        .arg("-al")
        .arg(&config.paths.workspace)
        .arg(&copy.paths.workspace)
        .status()
        .unwrap();
    assert!(ok.success(), "copying the workspace");
    std::fs::copy(&config.paths.index_db, &copy.paths.index_db).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let started = Instant::now();
    let server = std::process::Command::new(env!("CARGO_BIN_EXE_floom"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir)
        .arg("--secrets-key-file")
        .arg(dir.join("secrets.key"))
        .env_remove("FLOOM_SECRET")
        .env("FLOOM_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "floom serve did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (server, base, started.elapsed())
}

/// `floom serve` alone on this size's data: its start (process start to `/healthz`,
/// index up to date) and its resident memory when ready and after list and full-text
/// load from 8 clients.
async fn serve_reads_rows(
    config: &Config,
    secs: f64,
    row: &mut impl FnMut(&'static str, Option<Stats>, Option<Stats>, Option<Duration>, String),
) {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, base, ready_after) = spawn_serve(config, dir.path()).await;
    let pid = server.id();
    let ready = memory_sample(pid, 0.0, 0);
    row(
        "`floom serve` alone: start to /healthz",
        None,
        None,
        Some(ready_after),
        "index up to date".into(),
    );
    let times = ServerTimes::default();
    // In turn, a query of each of `values` (`?{query}{value}`).
    let turns = |query: &'static str, values: &'static [&'static str]| {
        load_gets(&times, secs, &base, move |i| {
            let value = values[(i % values.len() as u64) as usize];
            format!("/workspace/issues?{query}{value}&limit=50")
        })
    };
    let (list, _) = turns("status=open&label=", &LABELS).await;
    let (text, _) = turns("q=", &WORDS).await;
    let after = memory_sample(pid, 0.0, 0);
    let peak = process_mb(pid, "VmHWM:");
    // SAFETY: a signal to the child started above.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    server.wait().unwrap();
    let (list_count, text_count) = (list.count, text.count);
    let note = format!(
        "{:.0} req/s, cold caches: the first requests of the process",
        list.rps
    );
    row(
        "`floom serve` alone: list status+label (8 labels)",
        Some(list),
        None,
        None,
        note,
    );
    let note = format!("{:.0} req/s", text.rps);
    row(
        "`floom serve` alone: full-text search",
        Some(text),
        None,
        None,
        note,
    );
    row(
        "`floom serve` alone: resident memory",
        None,
        None,
        None,
        format!(
            "{:.0} MB when ready (anon {:.0}, file {:.0}); {:.0} MB after {} list requests (8 labels) and {} full-text ones (anon {:.0}, file {:.0}); peak {peak:.0} MB",
            ready.rss,
            ready.anon,
            ready.file,
            after.rss,
            list_count,
            text_count,
            after.anon,
            after.file
        ),
    );
}

/// glibc's view of the heap: bytes in use, bytes free but kept, and the file-backed
/// part of the resident set (mapped packs, SQLite's shared memory).
fn heap_note() -> String {
    // SAFETY: mallinfo2 reads glibc's counters.
    let m = unsafe { libc::mallinfo2() };
    let mb = |b: usize| b as f64 / 1048576.0;
    let field = |name: &str| process_mb(std::process::id(), name);
    format!(
        "malloc: {:.0} MB in use, {:.0} MB free in its arenas, {:.0} MB mmapped; RSS anon {:.0} MB, file {:.0} MB",
        mb(m.uordblks + m.hblkhd),
        mb(m.fordblks),
        mb(m.hblkhd),
        field("RssAnon:"),
        field("RssFile:"),
    )
}

/// `.git`'s size and loose objects now, then packed by `git gc` (what it would be if
/// every object were packed) for the comparison; waits for the server's own
/// background gc first.
fn git_size_note(root: &Path, writes: usize) -> String {
    // Let a background `git gc --auto` finish (it holds gc.pid while it runs).
    let pid = root.join(".git/gc.pid");
    let t = Instant::now();
    while pid.exists() && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let now = dir_mb(&root.join(".git"));
    let loose = loose_objects(root);
    let ok = std::process::Command::new("git")
        .args(["gc", "--quiet"])
        .current_dir(root)
        .status()
        .unwrap();
    assert!(ok.success());
    let packed = dir_mb(&root.join(".git"));
    format!(
        "{now:.1} MB after {writes} writes, {loose} loose objects; {packed:.1} MB once all packed (git gc): {:.1}x",
        now / packed
    )
}

fn loose_objects(root: &Path) -> u64 {
    let out = std::process::Command::new("git")
        .args(["count-objects"])
        .current_dir(root)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn dir_mb(dir: &Path) -> f64 {
    fn walk(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path()),
                Ok(_) => e.metadata().map_or(0, |m| m.len()),
                Err(_) => 0,
            })
            .sum()
    }
    walk(dir) as f64 / (1024.0 * 1024.0)
}

/// CPU time this process has used (user and system, every thread): on a machine
/// shared with other work, the cost of a row that its throughput does not show.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// How many times the branch has moved (its reflog's length): one per batch of writes.
fn branch_moves(root: &Path) -> usize {
    let repo = git2::Repository::open(root).unwrap();
    let head = repo.head().unwrap();
    repo.reflog(head.name().unwrap()).unwrap().len()
}

/// libgit2's object cache: in use / allowed.
fn git_cache() -> String {
    // SAFETY: reads two process-wide counters.
    match unsafe { git2::opts::get_cached_memory() } {
        Ok((used, allowed)) => format!(
            "{:.1} of {:.0} MB",
            used as f64 / 1048576.0,
            allowed as f64 / 1048576.0
        ),
        Err(_) => "unknown".into(),
    }
}

/// `FLOOM_BENCH_GIT_CACHE_MB`: override floom's bound on libgit2's object cache (after
/// floom set it: call after opening a workspace), to measure the bound.
fn set_git_cache_for_bench() {
    if let Some(mb) = std::env::var("FLOOM_BENCH_GIT_CACHE_MB")
        .ok()
        .and_then(|s| s.parse::<isize>().ok())
    {
        // SAFETY: one process-wide integer, set between loads.
        unsafe { git2::opts::set_cache_max_size(mb << 20) }.unwrap();
    }
}

/// An upstream workspace (every issue flat in `.floom/issues/`): writes on it as it is,
/// then `floom relayout` (the command's own function, on the served workspace with
/// the writer held) and the same writes again.
async fn bench_upstream(n: u64, secs: f64, rows: &mut Vec<Row>, dir: &Path) {
    let mut row = table(rows, format!("{n} issues, upstream flat"));
    let config = Config::under(dir);
    config.paths.create_dirs().unwrap();
    let t = Instant::now();
    prepare_workspace(&config.paths.workspace, n, true);
    eprintln!(
        "[{n} flat] workspace ready in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let state = AppState::open(config.clone(), &|_, _| {}).await.unwrap();
    set_git_cache_for_bench();
    let (base, times) = serve_recorded(&state).await;
    let git_before = dir_mb(&state.issues.workspace.root().join(".git"));
    let mut writes = 0;
    for phase in ["before relayout", "after relayout"] {
        if phase == "after relayout" {
            let ws = &state.issues.workspace;
            let t = Instant::now();
            let mut repo = ws.lock().await;
            ws.flush_git_index().await.unwrap();
            let moved = tokio::task::block_in_place(|| {
                floom::workspace::relayout::relayout(&mut repo, &|_, _| {})
            })
            .unwrap()
            .expect("flat files to move");
            drop(repo);
            let committed = t.elapsed();
            ws.flush_git_index().await.unwrap();
            let staged = t.elapsed();
            state.index.reconcile(&|_, _| {}).await.unwrap();
            row(
                "floom relayout (commit, move, git index, re-index)",
                None,
                None,
                Some(t.elapsed()),
                format!(
                    "{} issues, {} files moved; commit and move {:.1} s, git index {:.1} s, re-index {:.1} s",
                    moved.issues,
                    moved.files,
                    committed.as_secs_f64(),
                    (staged - committed).as_secs_f64(),
                    (t.elapsed() - staged).as_secs_f64()
                ),
            );
            let status = std::process::Command::new("git")
                .args(["status", "--porcelain"])
                .current_dir(ws.root())
                .output()
                .unwrap();
            assert!(status.stdout.is_empty(), "git status after relayout");
        }
        let b = base.clone();
        let (c, s) = load(&times, 1, secs, move |c, i| {
            c.post(format!("{b}/workspace/issues"))
                .json(&serde_json::json!({"title": format!("bench {i}"), "labels": ["bench"]}))
        })
        .await;
        writes += c.count;
        let note = format!("{:.0} req/s, 1 client, {phase}", c.rps);
        row(
            "create issue (commit included)",
            Some(c),
            Some(s),
            None,
            note,
        );
        let b = base.clone();
        let (c, s) = load(&times, 1, secs, move |c, i| {
            c.post(format!(
                "{b}/workspace/issues/{}/comments",
                layout::format_id(1 + (i * 7919) % n)
            ))
            .json(&serde_json::json!({"body": format!("bench comment {i}")}))
        })
        .await;
        writes += c.count;
        let note = format!("{:.0} req/s, 1 client, {phase}", c.rps);
        row("comment (commit included)", Some(c), Some(s), None, note);
    }
    state.issues.workspace.flush_git_index().await.unwrap();
    row(
        ".git after the writes",
        None,
        None,
        None,
        format!(
            "{git_before:.1} MB before; {}",
            git_size_note(state.issues.workspace.root(), writes)
        ),
    );
    state.index.close().await;
}

/// A worker folder like an author's: a manifest with inputs, a secret, a schedule, and
/// a script and a README beside it.
fn worker_manifest(i: u64, note: &str) -> String {
    format!(
        "schema_version: \"0.3\"\nname: worker-{i:05}\ntitle: Worker {i}\ndescription: Tags {} rows {note}\nversion: 1.0.{i}\ntags: [{}]\nexec:\n  entry: run.py\n  inputs:\n    - {{name: table, kind: file, media_type: text/csv, required: true}}\n    - {{name: mode, type: select, enum: [fast, careful], default: fast}}\n  outputs:\n    - {{name: tagged, kind: file, media_type: text/csv, path: out/tagged.csv}}\n  secrets: [OPENAI_API_KEY]\ntriggers:\n  - {{type: schedule, cron: \"0 9 * * MON\", timezone: Europe/Berlin}}\nconnections: [gmail]\n",
        WORDS[(i % 16) as usize],
        LABELS[(i % 8) as usize],
    )
}

fn generate_workers(workers: &Path, n: u64) {
    for i in 0..n {
        let dir = workers.join(format!("worker-{i:05}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("worker.yml"), worker_manifest(i, "")).unwrap();
        std::fs::write(
            dir.join("run.py"),
            "import json\nprint(json.load(open('inputs.json')))\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("README.md"),
            format!("# Worker {i}\n\nTags rows.\n"),
        )
        .unwrap();
    }
}

async fn bench_workers(n: u64, secs: f64, rows: &mut Vec<Row>, dir: &Path) {
    let mut row = table(rows, format!("{n} workers"));
    let config = Config::under(dir);
    config.paths.create_dirs().unwrap();
    Workspace::open(&config.paths.workspace, None, Default::default()).unwrap();
    generate_workers(&config.paths.workers, n);
    let ws = config.paths.workspace.clone();
    let index = Index::open(
        &config.paths.index_db,
        &ws.canonicalize().unwrap(),
        &config.paths.workers_rel,
    )
    .await
    .unwrap();
    let t = Instant::now();
    let stats_ = index.reconcile_workers(false).await.unwrap();
    row(
        "cold worker index (read + parse every folder)",
        None,
        None,
        Some(t.elapsed()),
        format!("{} loaded", stats_.loaded),
    );
    index.close().await;
    drop(index);
    let state = AppState::open(config.clone(), &|_, _| {}).await.unwrap();
    let _watch = watcher::spawn(state.index.clone()).unwrap();
    let (base, times) = serve_recorded(&state).await;

    let b = base.clone();
    let (c, s) = load(&times, CONCURRENCY, secs, move |c, _| {
        c.get(format!("{b}/workers"))
    })
    .await;
    let note = format!("{:.0} req/s, every worker, full shape", c.rps);
    row("GET /workers", Some(c), Some(s), None, note);

    let b = base.clone();
    let (c, s) = load(&times, CONCURRENCY, secs, move |c, i| {
        c.get(format!(
            "{b}/workers?shape=list&limit=50&q={}",
            WORDS[(i % 16) as usize]
        ))
    })
    .await;
    let note = format!("{:.0} req/s", c.rps);
    row(
        "GET /workers?q=…&shape=list&limit=50",
        Some(c),
        Some(s),
        None,
        note,
    );

    let b = base.clone();
    let (c, s) = load(&times, CONCURRENCY, secs, move |c, i| {
        c.get(format!("{b}/workers/worker-{:05}", i % n))
    })
    .await;
    let note = format!("{:.0} req/s", c.rps);
    row("GET /workers/{id}", Some(c), Some(s), None, note);

    let client = reqwest::Client::new();
    let mut lat = Vec::new();
    for i in 0..20u64 {
        let note = format!("edited {i}");
        let path = config
            .paths
            .workers
            .join(format!("worker-{i:05}/worker.yml"));
        let t = Instant::now();
        std::fs::write(&path, worker_manifest(i, &note)).unwrap();
        loop {
            let r: serde_json::Value =
                get_json(&client, format!("{base}/workers/worker-{i:05}")).await;
            if r["description"]
                .as_str()
                .is_some_and(|d| d.ends_with(&note))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lat.push(t.elapsed());
    }
    row(
        "worker.yml edit visible in the detail",
        Some(stats(lat, Duration::from_secs(1))),
        None,
        None,
        "file write → GET shows it".into(),
    );
    state.index.close().await;
}

/// Trigger a trivial worker `n` times, one after another; the time from the request
/// to the run's `completed` status, polled every millisecond.
async fn trigger_to_completed(base: &str, n: usize) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let r: serde_json::Value = client
            .post(format!("{base}/workers/trivial/runs"))
            .json(&serde_json::json!({"inputs": {"i": i}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["run_id"].as_str().expect("a run id").to_string();
        loop {
            let run: serde_json::Value = get_json(&client, format!("{base}/runs/{id}")).await;
            match run["status"].as_str() {
                Some("completed") => break,
                Some("queued" | "running") => tokio::time::sleep(Duration::from_millis(1)).await,
                other => panic!("the trivial run ended {other:?}: {run}"),
            }
        }
        lat.push(t.elapsed());
    }
    lat
}

const TRIVIAL: &str = "import json\nprint('hi')\nopen('result.json', 'w').write(json.dumps({'outputs': {'ok': True}}))\n";

async fn bench_runs(n_runs: u64, secs: f64, rows: &mut Vec<Row>, dir: &Path) {
    let mut row = table(rows, format!("{n_runs} runs"));
    for (label, mode) in [
        (
            "trivial worker, trigger to completed, sandboxed",
            floom::config::SandboxMode::On,
        ),
        (
            "trivial worker, trigger to completed, no sandbox",
            floom::config::SandboxMode::Off,
        ),
    ] {
        let sub = dir.join(format!("{mode:?}"));
        let mut config = Config::under(&sub);
        config.runs.sandbox = mode;
        let state = AppState::open(config.clone(), &|_, _| {}).await.unwrap();
        let w = config.paths.workers.join("trivial");
        std::fs::create_dir_all(&w).unwrap();
        std::fs::write(w.join("run.py"), TRIVIAL).unwrap();
        std::fs::write(
            w.join("worker.yml"),
            "schema_version: \"0.3\"\nname: trivial\ntitle: Trivial\nversion: 1.0.0\nexec:\n  entry: run.py\n",
        )
        .unwrap();
        state.index.reconcile_workers(true).await.unwrap();
        let (base, _times) = serve_recorded(&state).await;
        trigger_to_completed(&base, 3).await; // warm the page cache
        let lat = trigger_to_completed(&base, 40).await;
        let n = lat.len();
        row(
            label,
            Some(stats(lat, Duration::from_secs(1))),
            None,
            None,
            format!("{n} runs, one at a time"),
        );
        state.engine.shutdown().await;
        state.index.close().await;
    }

    // A store with n_runs runs over 50 workers, written straight into its table.
    let config = Config::under(&dir.join("history"));
    let state = AppState::open(config.clone(), &|_, _| {}).await.unwrap();
    let t = Instant::now();
    {
        use sqlx::Connection;
        let floom::config::StoreLocation::Sqlite(file) = &config.paths.store else {
            unreachable!("Config::under keeps the store in a SQLite file")
        };
        let mut db = sqlx::SqliteConnection::connect(&format!("sqlite:{}", file.display()))
            .await
            .unwrap();
        let mut tx = db.begin().await.unwrap();
        let statuses = ["completed", "completed", "completed", "failed", "cancelled"];
        for i in 0..n_runs {
            let ts = 1_780_000_000_000_000i64 + i as i64 * 1_000_000;
            let at = chrono::DateTime::from_timestamp_micros(ts)
                .unwrap()
                .to_rfc3339();
            sqlx::query(
                "INSERT INTO runs (id, worker_id, worker_name, status, trigger_source, runner, input_json,
                    output_json, created_at, created_ts, started_at, completed_at, duration_ms, trace_id)
                 VALUES (?, ?, ?, ?, 'manual', 'e2b', '{\"q\":1}', '{\"ok\":true}', ?, ?, ?, ?, 120, 'trace')",
            )
            .bind(format!("run_{i:012x}"))
            .bind(format!("worker-{:02}", i % 50))
            .bind(format!("Worker {}", i % 50))
            .bind(statuses[(i % 5) as usize])
            .bind(&at)
            .bind(ts)
            .bind(&at)
            .bind(&at)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }
    eprintln!(
        "[runs] {n_runs} runs written in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let (base, times) = serve_recorded(&state).await;
    for (label, query) in [
        ("GET /runs (newest 50)", ""),
        ("GET /runs?worker_id=…", "?worker_id=worker-07"),
        ("GET /runs?status=failed", "?status=failed"),
    ] {
        let b = base.clone();
        let q = query.to_string();
        let (c, s) = load(&times, CONCURRENCY, secs, move |c, _| {
            c.get(format!("{b}/runs{q}"))
        })
        .await;
        let note = format!("{:.0} req/s, X-Total-Count included", c.rps);
        row(label, Some(c), Some(s), None, note);
    }
    let b = base.clone();
    let (c, s) = load(&times, CONCURRENCY, secs, move |c, i| {
        c.get(format!("{b}/runs/run_{:012x}", (i * 7919) % n_runs))
    })
    .await;
    let note = format!("{:.0} req/s", c.rps);
    row("GET /runs/{id}", Some(c), Some(s), None, note);
    state.engine.shutdown().await;
    state.index.close().await;
}

/// The run rows again over a PostgreSQL store (`FLOOM_BENCH_DATABASE_URL`, an empty
/// database): trigger to completed without the sandbox, then `n_runs` runs written
/// straight into its table and the same run lists as on SQLite.
async fn bench_runs_postgres(url: &str, n_runs: u64, secs: f64, rows: &mut Vec<Row>, dir: &Path) {
    let mut row = table(rows, format!("{n_runs} runs, PostgreSQL"));
    let mut config = Config::under(dir);
    config.paths.store = floom::config::StoreLocation::Postgres(url.to_string());
    config.runs.sandbox = floom::config::SandboxMode::Off;
    let state = AppState::open(config.clone(), &|_, _| {}).await.unwrap();
    let w = config.paths.workers.join("trivial");
    std::fs::create_dir_all(&w).unwrap();
    std::fs::write(w.join("run.py"), TRIVIAL).unwrap();
    std::fs::write(
        w.join("worker.yml"),
        "schema_version: \"0.3\"\nname: trivial\ntitle: Trivial\nversion: 1.0.0\nexec:\n  entry: run.py\n",
    )
    .unwrap();
    state.index.reconcile_workers(true).await.unwrap();
    let (base, times) = serve_recorded(&state).await;
    trigger_to_completed(&base, 3).await;
    let lat = trigger_to_completed(&base, 40).await;
    let n = lat.len();
    row(
        "trivial worker, trigger to completed, no sandbox",
        Some(stats(lat, Duration::from_secs(1))),
        None,
        None,
        format!("{n} runs, one at a time"),
    );
    let t = Instant::now();
    {
        use sqlx::Connection;
        let mut db = sqlx::PgConnection::connect(url).await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let statuses = ["completed", "completed", "completed", "failed", "cancelled"];
        for i in 0..n_runs {
            let ts = 1_780_000_000_000_000i64 + i as i64 * 1_000_000;
            let at = chrono::DateTime::from_timestamp_micros(ts)
                .unwrap()
                .to_rfc3339();
            sqlx::query(
                "INSERT INTO runs (id, worker_id, worker_name, status, trigger_source, runner, input_json,
                    output_json, created_at, created_ts, started_at, completed_at, duration_ms, trace_id)
                 VALUES ($1, $2, $3, $4, 'manual', 'e2b', '{\"q\":1}', '{\"ok\":true}', $5, $6, $7, $8, 120, 'trace')",
            )
            .bind(format!("run_{i:012x}"))
            .bind(format!("worker-{:02}", i % 50))
            .bind(format!("Worker {}", i % 50))
            .bind(statuses[(i % 5) as usize])
            .bind(&at)
            .bind(ts)
            .bind(&at)
            .bind(&at)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        sqlx::query("ANALYZE runs").execute(&mut db).await.unwrap();
    }
    eprintln!(
        "[runs, PostgreSQL] {n_runs} runs written in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    for (label, query) in [
        ("GET /runs (newest 50)", ""),
        ("GET /runs?worker_id=…", "?worker_id=worker-07"),
        ("GET /runs?status=failed", "?status=failed"),
    ] {
        let b = base.clone();
        let q = query.to_string();
        let (c, s) = load(&times, CONCURRENCY, secs, move |c, _| {
            c.get(format!("{b}/runs{q}"))
        })
        .await;
        let note = format!("{:.0} req/s, X-Total-Count included", c.rps);
        row(label, Some(c), Some(s), None, note);
    }
    state.engine.shutdown().await;
    state.index.close().await;
    state.store.close().await;
}

/// `git` in `dir`, as a user would run it.
fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=bench", "-c", "user.email=bench@x"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Servers sharing one bare git remote on this host: creates in `remote` sync mode (each
/// answered once its commit is on the remote) from one writer and from three servers at
/// once, and how long an edit pushed elsewhere takes to show in a list.
async fn bench_replicas(secs: f64, rows: &mut Vec<Row>, dir: &Path) {
    use floom::workspace::replica::SyncMode;
    let mut row = table(rows, "bare remote".into());
    let remote = dir.join("remote.git");
    let laptop = dir.join("laptop");
    std::fs::create_dir_all(&remote).unwrap();
    git(&remote, &["init", "-q", "--bare", "-b", "main"]);
    git(dir, &["clone", "-q", remote.to_str().unwrap(), "laptop"]);
    git(&laptop, &["checkout", "-q", "-b", "main"]);
    std::fs::write(laptop.join("workspace.md"), "# bench\n").unwrap();
    git(&laptop, &["add", "."]);
    git(&laptop, &["commit", "-qm", "seed"]);
    git(&laptop, &["push", "-q", "origin", "main"]);
    let interval = Duration::from_millis(500);
    let mut servers = Vec::new();
    for i in 0..3 {
        let mut config = Config::under(&dir.join(format!("server{i}")));
        config.paths.git_remote = Some(remote.to_str().unwrap().to_string());
        config.paths.sync.mode = SyncMode::Remote;
        config.paths.sync.fetch_interval = interval;
        config.paths.sync.push_deadline = Duration::from_secs(60);
        let state = AppState::open(config, &|_, _| {}).await.unwrap();
        let (base, times) = serve_recorded(&state).await;
        servers.push((state, base, times));
    }
    let create = |base: String| {
        move |c: &reqwest::Client, i: u64| {
            c.post(format!("{base}/workspace/issues"))
                .json(&serde_json::json!({"title": format!("replica {i}")}))
        }
    };
    let (client, server) = load(&servers[0].2, 1, secs, create(servers[0].1.clone())).await;
    let note = format!("{:.0} creates/s", client.rps);
    row(
        "create, remote sync mode, 1 writer",
        Some(client),
        Some(server),
        None,
        note,
    );

    let all: Vec<_> = servers
        .iter()
        .map(|(_, base, times)| load(times, 1, secs, create(base.clone())))
        .collect();
    let results = futures_util::future::join_all(all).await;
    let total: f64 = results.iter().map(|(c, _)| c.rps).sum();
    let (client, server) = results.into_iter().next().unwrap();
    let note =
        format!("3 servers, 1 writer each: {total:.0} creates/s in all; one server's latencies");
    row(
        "create, remote sync mode, 3 servers",
        Some(client),
        Some(server),
        None,
        note,
    );

    // An issue pushed from a laptop, then polled for on the first server.
    let client = reqwest::Client::new();
    let mut seen = Vec::new();
    for k in 0..10u64 {
        let num = 900_000 + k;
        let rel = layout::new_issue_path(num);
        let path = laptop.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let id = layout::format_id(num);
        std::fs::write(
            &path,
            format!("---\nid: {id}\ntitle: pushed {k}\nstatus: open\n---\n"),
        )
        .unwrap();
        git(&laptop, &["add", "."]);
        git(&laptop, &["commit", "-qm", &format!("laptop {k}")]);
        git(&laptop, &["pull", "-q", "--rebase", "origin", "main"]);
        git(&laptop, &["push", "-q", "origin", "HEAD:main"]);
        let pushed = Instant::now();
        let url = format!("{}/workspace/issues/{id}", servers[0].1);
        while !client.get(&url).send().await.unwrap().status().is_success() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen.push(pushed.elapsed());
    }
    seen.sort();
    let note = format!(
        "a `git push` elsewhere until GET answers it; fetch interval {} ms; max {}",
        interval.as_millis(),
        ms(*seen.last().unwrap())
    );
    row(
        "pushed elsewhere → visible, p50",
        None,
        None,
        Some(seen[seen.len() / 2]),
        note,
    );
    for (state, _, _) in servers {
        state.engine.shutdown().await;
    }
}

fn main() {
    floom::outbound::ensure_tls();
    let sizes: Vec<u64> = std::env::var("FLOOM_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let secs: f64 = std::env::var("FLOOM_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    // Every size's data folder lives until the end: deleting 100k files just before the
    // next size's writes would make ext4 slow to allocate inodes and skew what they measure.
    let dirs: Vec<tempfile::TempDir> = sizes.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    for (n, dir) in sizes.iter().zip(&dirs) {
        rt.block_on(bench_size(*n, secs, &mut rows, dir.path()));
    }
    let upstream: Vec<u64> = match std::env::var("FLOOM_BENCH_UPSTREAM") {
        Ok(s) => s
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .filter(|n| *n > 0)
            .collect(),
        Err(_) => sizes.iter().max().into_iter().copied().collect(),
    };
    let upstream_dirs: Vec<tempfile::TempDir> = upstream
        .iter()
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    for (n, dir) in upstream.iter().zip(&upstream_dirs) {
        rt.block_on(bench_upstream(*n, secs, &mut rows, dir.path()));
    }
    let workers: u64 = std::env::var("FLOOM_BENCH_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let workers_dir = tempfile::tempdir().unwrap();
    if workers > 0 {
        rt.block_on(bench_workers(workers, secs, &mut rows, workers_dir.path()));
    }
    let runs: u64 = std::env::var("FLOOM_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let runs_dir = tempfile::tempdir().unwrap();
    if runs > 0 {
        rt.block_on(bench_runs(runs, secs, &mut rows, runs_dir.path()));
    }
    if let Ok(url) = std::env::var("FLOOM_BENCH_DATABASE_URL")
        && runs > 0
    {
        let pg_dir = tempfile::tempdir().unwrap();
        rt.block_on(bench_runs_postgres(
            &url,
            runs,
            secs,
            &mut rows,
            pg_dir.path(),
        ));
    }
    let replicas_dir = tempfile::tempdir().unwrap();
    if std::env::var("FLOOM_BENCH_REPLICAS").map_or(true, |v| v != "0") {
        rt.block_on(bench_replicas(secs, &mut rows, replicas_dir.path()));
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "floom benchmark: {cores} cores; reads with {CONCURRENCY} concurrent clients, writes with 1, on loopback, \
         {secs} s per row; client and server share the cores\n"
    );
    println!(
        "| workspace | work | client p50 | client p99 | server p50 | server p99 | single run | throughput / note |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---|");
    for r in rows {
        println!(
            "| {} | {} | {} |",
            r.size,
            r.work,
            row_cells(&r.client, &r.server, r.single, &r.note)
        );
    }
}
