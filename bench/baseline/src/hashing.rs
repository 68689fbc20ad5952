//! The Argon2id limit: how long one verification takes with the configured parameters.

use std::sync::Barrier;
use std::time::Instant;

use anyhow::anyhow;
use argon2::password_hash::PasswordHasher as _;
use argon2::{Algorithm, Argon2, Params, Version};

// The service's own working memory (huge pages, kept from one hash to the next), so that the
// limit is measured on the memory the service hashes in.
#[path = "../../../src/auth/working_memory.rs"]
#[allow(dead_code)] // the parts only the service uses
mod working_memory;
use working_memory::WorkingMemory;

fn param(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The service's parameters: `ARGON2_MEMORY_KIB`, `ARGON2_ITERATIONS`, `ARGON2_PARALLELISM`.
fn argon2() -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(
        param("ARGON2_MEMORY_KIB", 19_456),
        param("ARGON2_ITERATIONS", 2),
        param("ARGON2_PARALLELISM", 1),
        None,
    )
    .map_err(|e| anyhow!("{e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A PHC string for `password`, as the service writes it.
pub fn hash(password: &str) -> anyhow::Result<String> {
    Ok(argon2()?
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow!("{e}"))?
        .to_string())
}

/// One Argon2id computation, the work of one verification, in `memory` allocated beforehand:
/// the limit is the hash itself, not the allocator (the service keeps its memory too).
fn compute(argon2: &Argon2<'_>, memory: &mut WorkingMemory) -> anyhow::Result<()> {
    let mut out = [0u8; 32];
    let blocks = memory.blocks_for(argon2.params().block_count())?;
    argon2
        .hash_password_into_with_memory(b"bench-password", b"sixteen byte salt", &mut out, blocks)
        .map_err(|e| anyhow!("{e}"))
}

/// CPU time this thread has used: a hash that waits for memory takes more of it, one that waits
/// for a core does not.
fn thread_cpu_seconds() -> anyhow::Result<f64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(now.tv_sec as f64 + now.tv_nsec as f64 / 1e9)
}

fn working_memory(argon2: &Argon2<'_>) -> anyhow::Result<WorkingMemory> {
    let mut memory = WorkingMemory::new();
    memory.blocks_for(argon2.params().block_count())?;
    Ok(memory)
}

/// Prints `seconds_per_verify`, `cores` and `limit_per_second` (cores / seconds per verify),
/// timing `rounds` Argon2id computations on one thread after one warm-up; then
/// `parallel_per_second`, what one thread per core actually computes together once each has
/// its memory (what the cores share and whatever else runs on the machine bring it under the
/// limit);
/// `seconds_per_wipe`, the median time to zero the working memory, which the service does once a
/// hashing thread is idle (after every hash before) and the figures above leave out; then
/// `cpu_alone`, the median CPU seconds of one computation on one thread alone (the timed hashes
/// above), and `cpu_parallel`, the mean with one thread per core. A hash slowed by the hash on
/// the other core, through what the cores share, or by a slower host takes more CPU time; one
/// that waits for a core does not.
pub fn report(rounds: u32) -> anyhow::Result<()> {
    let argon2 = argon2()?;
    let mut memory = working_memory(&argon2)?;
    let mut times = Vec::new();
    let mut cpu_times = Vec::new();
    compute(&argon2, &mut memory)?; // warm-up
    for _ in 0..rounds {
        let cpu_started = thread_cpu_seconds()?;
        let started = Instant::now();
        compute(&argon2, &mut memory)?;
        times.push(started.elapsed().as_secs_f64());
        cpu_times.push(thread_cpu_seconds()? - cpu_started);
    }
    times.sort_by(f64::total_cmp);
    cpu_times.sort_by(f64::total_cmp);
    let mut wipes = Vec::new();
    for _ in 0..rounds {
        // Marks every block as written, as a hash does.
        memory.blocks_for(argon2.params().block_count())?;
        let started = Instant::now();
        memory.wipe();
        wipes.push(started.elapsed().as_secs_f64());
    }
    wipes.sort_by(f64::total_cmp);
    // The median: a compile on the other core slows some rounds, not the hash itself.
    let median = times[times.len() / 2];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (parallel, cpu_parallel) = in_parallel(&argon2, cores, rounds)?;
    println!(
        "seconds_per_verify={median:.5} min={:.5} cores={cores} limit_per_second={:.2} \
         parallel_per_second={parallel:.2} seconds_per_wipe={:.5} cpu_alone={:.5} \
         cpu_parallel={cpu_parallel:.5}",
        times[0],
        cores as f64 / median,
        wipes[wipes.len() / 2],
        cpu_times[cpu_times.len() / 2]
    );
    Ok(())
}

/// `rounds` computations on each of `cores` threads at once: computations per second of wall
/// time, and the mean CPU seconds of one. The window opens when every thread has its memory and
/// has hashed once (the warm-up of the single thread above), and closes when the last thread
/// is done: starting threads and the kernel's first faults on 19 MiB each, which took from
/// nothing to a third of the window from one run to the next, are not hashing.
fn in_parallel(argon2: &Argon2<'_>, cores: usize, rounds: u32) -> anyhow::Result<(f64, f64)> {
    let ready = Barrier::new(cores + 1);
    let (started, done) = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..cores)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<(Instant, f64)> {
                    // A thread that fails still reaches the barrier, or the others would wait
                    // for it for ever.
                    let warmed = working_memory(argon2)
                        .and_then(|mut memory| compute(argon2, &mut memory).map(|()| memory));
                    ready.wait();
                    let mut memory = warmed?;
                    let cpu_started = thread_cpu_seconds()?;
                    for _ in 0..rounds {
                        compute(argon2, &mut memory)?;
                    }
                    Ok((Instant::now(), thread_cpu_seconds()? - cpu_started))
                })
            })
            .collect();
        ready.wait();
        let started = Instant::now();
        let done: anyhow::Result<Vec<(Instant, f64)>> = threads
            .into_iter()
            .map(|t| t.join().map_err(|_| anyhow!("a hashing thread panicked"))?)
            .collect();
        (started, done)
    });
    let done = done?;
    let ended = done
        .iter()
        .map(|(ended, _)| *ended)
        .max()
        .unwrap_or(started);
    let computed = f64::from(rounds) * cores as f64;
    let per_second = computed / ended.duration_since(started).as_secs_f64();
    let cpu_per_hash = done.iter().map(|(_, cpu)| cpu).sum::<f64>() / computed;
    Ok((per_second, cpu_per_hash))
}

/// Hashes on one thread per core, back to back, for `seconds`: the CPU and memory load of a
/// login flood without its requests. Scenario 3 runs it under `nice` and `chrt` to show what
/// the scheduling priority of hashing alone does to other requests.
pub fn load(seconds: u64) -> anyhow::Result<()> {
    let argon2 = argon2()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let until = Instant::now() + std::time::Duration::from_secs(seconds);
    let hashes: u64 = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..cores)
            .map(|_| {
                scope.spawn(|| {
                    let Ok(mut memory) = working_memory(&argon2) else {
                        return 0;
                    };
                    let mut done = 0u64;
                    while Instant::now() < until && compute(&argon2, &mut memory).is_ok() {
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap_or(0)).sum()
    });
    println!("hashes={hashes} threads={cores} seconds={seconds}");
    Ok(())
}
