//! Decompression bombs are refused from the header, before any pixel memory is allocated.
//! A counting allocator (per thread) measures what the refusal allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use imggo_optimize::{ImageFormat, OptimizeError, Optimizer, Options};

struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator and only adds bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + layout.size()));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.with(Cell::get);
    let out = f();
    (out, ALLOCATED.with(Cell::get) - before)
}

/// A PNG that claims 60000×60000 RGBA, followed by a little compressed data.
fn png_bomb() -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    b.extend_from_slice(&60000u32.to_be_bytes());
    b.extend_from_slice(&60000u32.to_be_bytes());
    b.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&[0u8; 1000]);
    b
}

/// A JPEG whose frame header claims 60000×60000.
fn jpeg_bomb() -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xC0, 0, 17, 8];
    b.extend_from_slice(&60000u16.to_be_bytes());
    b.extend_from_slice(&60000u16.to_be_bytes());
    b.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    b.extend_from_slice(&[0u8; 1000]);
    b
}

#[test]
fn a_60000_square_header_is_refused_without_allocating() {
    // The counter works: a 10 kB allocation is seen.
    let (_, seen) = allocated_by(|| vec![1u8; 10_000]);
    assert!(seen >= 10_000, "counting allocator saw {seen} bytes");
    let mut optimizer = Optimizer::new(Options::default());
    for (input, format) in [
        (png_bomb(), ImageFormat::Png),
        (jpeg_bomb(), ImageFormat::Jpeg),
    ] {
        let start = std::time::Instant::now();
        let (result, bytes) = allocated_by(|| optimizer.optimize(&input));
        let elapsed = start.elapsed();
        match result {
            Err(OptimizeError::TooManyPixels {
                width: 60000,
                height: 60000,
                pixels: 3_600_000_000,
                limit: 100_000_000,
            }) => {}
            other => panic!("{format}: {other:?}"),
        }
        // Reported, not asserted: speed belongs to the benches (`optimize/refuse_bomb`).
        eprintln!("{format} bomb refused in {elapsed:?}, {bytes} bytes allocated");
        assert!(bytes < 4096, "{format}: refusal allocated {bytes} bytes");
    }
}
