//! What Linux reports of the running service's threads (`src/scheduling.rs`): request
//! threads ask for short time slices, password hashing threads for long ones at nice 10.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::process::Process;

/// Name (as the kernel shortens it) to the nice value and time slice of each thread.
type Threads = Vec<(String, i32, Option<u64>)>;

fn threads(pid: u32) -> Threads {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path();
        let (Ok(name), Ok(sched)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("sched")),
        ) else {
            continue; // the thread ended meanwhile
        };
        let (nice, slice) = nice_and_slice(&sched);
        found.push((name.trim().to_owned(), nice, slice));
    }
    found
}

/// From a `/proc/.../sched` file: the nice value (a normal thread's `prio` is 120 + nice).
fn nice_and_slice(sched: &str) -> (i32, Option<u64>) {
    let field = |wanted: &str| {
        sched.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.trim() == wanted).then(|| value.trim().parse::<i64>().ok())?
        })
    };
    let nice = field("prio").map_or(0, |prio| prio as i32 - 120);
    (nice, field("se.slice").map(|slice| slice as u64))
}

/// Linux honours slices asked for since 6.12.
fn kernel_honours_slices() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (6, 12)
}

#[test]
fn requests_run_with_short_slices_and_hashes_with_long_ones_at_a_lower_priority() {
    // The service starts at the test's own priority.
    let (ours, _) = nice_and_slice(&std::fs::read_to_string("/proc/thread-self/sched").unwrap());
    let process = Process::start(&[]);
    // The service starts one hashing thread per core it may use, as many as this test may.
    let hashing_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // A new thread carries the name of the thread that started it until it names itself, and
    // lowers its priority only then: wait until every hashing thread has done both, and the
    // password lane's thread has its name.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = threads(process.pid());
    while Instant::now() < deadline {
        let lowered: Vec<bool> = seen
            .iter()
            .filter(|(name, ..)| name.starts_with("gatehouse-hash"))
            .map(|(_, nice, _)| *nice == (ours + 10).min(19))
            .collect();
        let lane_named = seen.iter().any(|(name, ..)| name == "gatehouse-login");
        if lowered.len() == hashing_threads && lowered.iter().all(|&lowered| lowered) && lane_named
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        seen = threads(process.pid());
    }
    let mut by_kind: BTreeMap<&str, Vec<(i32, Option<u64>)>> = BTreeMap::new();
    for (name, nice, slice) in &seen {
        let kind = match name.as_str() {
            "tokio-rt-worker" => "request",
            name if name.starts_with("sqlx-sqlite") => "database",
            name if name.starts_with("gatehouse-hash") => "hashing",
            // The password lane's threads serve requests too, with the same settings.
            "gatehouse-login" => "logins",
            _ => continue,
        };
        by_kind.entry(kind).or_default().push((*nice, *slice));
    }
    assert_eq!(
        by_kind.keys().copied().collect::<Vec<_>>(),
        ["database", "hashing", "logins", "request"],
        "{seen:?}"
    );
    assert_eq!(by_kind["hashing"].len(), hashing_threads, "{seen:?}");
    let honoured = kernel_honours_slices() && seen.iter().all(|(.., slice)| slice.is_some());
    if !honoured {
        eprintln!("skipped the slices: this kernel does not honour or report slices asked for");
    }
    for (kind, threads) in &by_kind {
        let (want_nice, want_slice) = match *kind {
            "hashing" => ((ours + 10).min(19), 20_000_000),
            _ => (ours, 100_000),
        };
        for (nice, slice) in threads {
            assert_eq!(*nice, want_nice, "{kind} thread: {seen:?}");
            if honoured {
                assert_eq!(*slice, Some(want_slice), "{kind} thread: {seen:?}");
            }
        }
    }
}
