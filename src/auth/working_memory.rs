//! Argon2's working memory, kept by a hashing thread from one hash to the next.
//!
//! The blocks live in one allocation aligned to and sized in 2 MiB, which Linux is asked to
//! back with transparent huge pages. Argon2 reads its blocks at data-dependent places across
//! all 19 MiB, so with 4 KiB pages (4,864 of them) most of those reads also miss the TLB and
//! walk the page tables; with 2 MiB pages ten TLB entries cover it. The gain depends on the
//! machine: 2 % on one, 5 to 17 % more logins per second on another (bench/RESULTS.md, "Latest
//! change"). The memory is also left out of core dumps, as it holds values derived from
//! passwords. The price: 19 MiB are kept as 20 MiB, in whole huge pages.
//!
//! The benchmark helper (bench/baseline) compiles this file too, so that the Argon2 limit it
//! measures runs on the same memory as the service: it needs only `argon2`, `anyhow` and `libc`.

use std::alloc::{Layout, alloc, dealloc};
use std::ptr::NonNull;

use anyhow::anyhow;
use argon2::Block;

/// The size and alignment of a huge page on x86-64 and on aarch64 with 4 KiB pages. Elsewhere
/// the memory is aligned but the hint may not take.
const HUGE_PAGE: usize = 2 << 20;

/// Blocks that hold values derived from the passwords last hashed, until they are wiped: by
/// `wipe`, which a hashing thread runs once idle, and on drop.
///
/// Not after every hash: zeroing 19 MiB took 1.0 to 1.3 ms of a 20 ms login (bench/RESULTS.md,
/// scenario 2), and Argon2's first pass overwrites every block before reading it, so a hash
/// that follows at once wipes its predecessor for free. The cost: under steady load a
/// thread's memory holds the blocks of its last hash until the next one overwrites them, and
/// for `hashing_threads::IDLE_AFTER` after the load ends (longer if other processes keep the
/// cores busy, since the thread runs at a lower priority).
#[derive(Default)]
pub struct WorkingMemory {
    blocks: Option<Blocks>,
    /// How many leading blocks a hash has written since the last wipe.
    dirty: usize,
}

impl WorkingMemory {
    pub const fn new() -> Self {
        Self {
            blocks: None,
            dirty: 0,
        }
    }

    /// The first `needed` blocks, in a new allocation if the one kept is smaller, counted as
    /// written.
    pub fn blocks_for(&mut self, needed: usize) -> anyhow::Result<&mut [Block]> {
        if self.blocks().len() < needed {
            self.release();
            // Fallible: a stored hash may name any memory cost, and a refused allocation
            // would abort the process.
            self.blocks = Some(
                Blocks::allocate(needed)
                    .ok_or_else(|| anyhow!("cannot allocate {needed} KiB for Argon2"))?,
            );
        }
        let Some(blocks) = &mut self.blocks else {
            return Ok(&mut []);
        };
        // Counted before the hash runs, so one that panics halfway is wiped too.
        self.dirty = self.dirty.max(needed);
        Ok(&mut blocks.as_mut_slice()[..needed])
    }

    /// How many leading blocks may hold values of a hash.
    #[cfg(test)]
    pub fn dirty(&self) -> usize {
        self.dirty
    }

    /// The blocks kept, as they are now.
    pub fn blocks(&self) -> &[Block] {
        self.blocks.as_ref().map_or(&[], Blocks::as_slice)
    }

    /// Zeroes every block a hash has written since the last wipe.
    pub fn wipe(&mut self) {
        if let Some(blocks) = &mut self.blocks {
            let written = &mut blocks.as_mut_slice()[..self.dirty];
            written.fill(Block::default());
            // Tells the compiler the zeroes are read, so the fill is never dropped as a dead
            // store.
            std::hint::black_box(written);
        }
        self.dirty = 0;
    }

    /// Wipes the blocks and gives them back to the system.
    pub fn release(&mut self) {
        self.wipe();
        self.blocks = None;
    }
}

impl Drop for WorkingMemory {
    fn drop(&mut self) {
        self.wipe();
    }
}

/// `len` zeroed blocks at the start of one allocation of whole huge pages, owned like a
/// `Box<[Block]>`.
struct Blocks {
    start: NonNull<Block>,
    len: usize,
    layout: Layout,
}

impl Blocks {
    /// `None` if `len` is zero or the memory cannot be had.
    fn allocate(len: usize) -> Option<Self> {
        let size = len
            .checked_mul(Block::SIZE)?
            .checked_next_multiple_of(HUGE_PAGE)?;
        if size == 0 {
            return None;
        }
        let layout = Layout::from_size_align(size, HUGE_PAGE).ok()?;
        // SAFETY: `layout` has a non-zero size.
        let start = NonNull::new(unsafe { alloc(layout) })?;
        // Before our first write: the kernel picks the page size when a page is first
        // touched, so fresh memory then comes in huge pages.
        advise(start, size);
        // SAFETY: the allocation is `size` bytes long and ours; all zeroes is a valid `Block`
        // (an array of integers), so the `len` blocks are initialised from here on.
        unsafe { start.as_ptr().write_bytes(0, size) };
        Some(Self {
            start: start.cast(),
            len,
            layout,
        })
    }

    fn as_slice(&self) -> &[Block] {
        // SAFETY: `start` points to `len` initialised blocks that `self` owns; `&self` keeps
        // them from being written meanwhile.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [Block] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr(), self.len) }
    }
}

impl Drop for Blocks {
    fn drop(&mut self) {
        // SAFETY: allocated in `allocate` with this layout, and freed only here.
        unsafe { dealloc(self.start.as_ptr().cast(), self.layout) }
    }
}

/// Asks for huge pages and for the memory to stay out of core dumps. Both are hints: where
/// transparent huge pages are switched off the first does nothing, where the kernel is built
/// without them or does not know an advice the call fails, and the memory works as any other.
/// The service gives each such allocation a mapping of its own (`M_MMAP_THRESHOLD` in
/// `password.rs`), so the advice never outlives it on memory used for anything else.
#[cfg(target_os = "linux")]
fn advise(start: NonNull<u8>, size: usize) {
    for advice in [libc::MADV_HUGEPAGE, libc::MADV_DONTDUMP] {
        // SAFETY: the range is one whole allocation of ours, page-aligned; neither advice
        // changes what the memory holds or whether it is mapped.
        unsafe { libc::madvise(start.as_ptr().cast(), size, advice) };
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_start: NonNull<u8>, _size: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_zero(block: &Block) -> bool {
        block.as_ref().iter().all(|word| *word == 0)
    }

    #[test]
    fn blocks_start_on_a_huge_page_boundary_counted_as_written() {
        let mut memory = WorkingMemory::new();
        let blocks = memory.blocks_for(3000).unwrap();
        assert_eq!(blocks.len(), 3000);
        assert_eq!(blocks.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(blocks.iter().all(is_zero));
        assert_eq!(memory.dirty(), 3000);
    }

    #[test]
    fn a_smaller_hash_uses_the_blocks_kept_and_a_bigger_one_gets_new_ones() {
        let mut memory = WorkingMemory::new();
        let first = memory.blocks_for(2048).unwrap().as_ptr();
        assert_eq!(memory.blocks_for(1024).unwrap().as_ptr(), first);
        assert_eq!(memory.blocks().len(), 2048);
        assert_eq!(memory.dirty(), 2048);

        memory.blocks_for(4096).unwrap();
        assert_eq!(memory.blocks().len(), 4096);
        assert_eq!(memory.dirty(), 4096);
        memory.release();
        assert_eq!(memory.blocks().len(), 0);
        assert_eq!(memory.dirty(), 0);
    }

    #[test]
    fn memory_that_cannot_be_had_is_an_error_not_an_abort() {
        let mut memory = WorkingMemory::new();
        // Too big to count in bytes, and countable but more than any address space (1 PiB).
        for blocks in [usize::MAX / 2, 1 << 40] {
            let error = memory.blocks_for(blocks).unwrap_err();
            assert!(error.to_string().contains("cannot allocate"), "{error}");
            assert_eq!(memory.blocks().len(), 0);
        }
        // And the next hash still gets its memory.
        assert_eq!(memory.blocks_for(1024).unwrap().len(), 1024);
    }

    /// What the kernel recorded for the mapping that holds `address` (`/proc/self/smaps`):
    /// `hg` is advised to use huge pages, `dd` is left out of core dumps.
    #[cfg(target_os = "linux")]
    fn vm_flags_at(address: usize) -> Vec<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((from, to)) = first.split_once('-')
                && let (Ok(from), Ok(to)) = (
                    usize::from_str_radix(from, 16),
                    usize::from_str_radix(to, 16),
                )
            {
                inside = (from..to).contains(&address);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.split_whitespace().map(str::to_owned).collect();
            }
        }
        panic!("no mapping holds {address:#x}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_is_asked_for_huge_pages_and_no_core_dump() {
        let mut memory = WorkingMemory::new();
        let start = memory.blocks_for(19_456).unwrap().as_ptr() as usize;
        let flags = vm_flags_at(start);
        assert!(flags.iter().any(|f| f == "dd"), "{flags:?}");
        if std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
            assert!(flags.iter().any(|f| f == "hg"), "{flags:?}");
        } else {
            eprintln!("huge pages not checked: this kernel has no transparent huge pages");
        }
    }
}
