#![allow(clippy::needless_range_loop)] // index loops over fixed register tiles read clearest

//! CPU matrix multiply for inference, y = x · Wᵀ, with W packed once into column panels.
//!
//! candle's CPU gemm repacks the weight on every call. This keeps each weight packed, splits the
//! output columns across threads and runs the microkernels of the process's kernel family
//! (`simd::level`, chosen once): AVX-512 (f32 FMA, and bf16 dot products with f32 accumulation
//! on CPUs with AVX512-BF16) or AVX2+FMA (f32 FMA, and bf16 products widened to f32). The f32
//! kernels of both families accumulate in the same order and give identical results, and so do
//! the bf16 kernels. Int8 weights (`Precision::Q8`) are widened to bf16 pairs one K block of a
//! panel at a time and run through the bf16 kernels, so they give exactly the bf16 product of
//! the dequantized weights (and the dot-product instruction's speed where the CPU has it). Another
//! architecture (NEON) would add a module of microkernels and an arm in `run_panel`.

use crate::simd::{level, Level};
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Output columns per panel (two 16-lane vectors, or four 8-lane ones).
const NR: usize = 32;
/// K is processed in blocks so a panel block stays in L2.
const KC: usize = 1024;
/// Rows of x per chunk (a chunk of x stays in cache while every panel passes).
const MC: usize = 192;
/// Inputs per int8 block: each block of one output's weights has its own scale (GGUF's Q8_0
/// block size). KC is a multiple of it, so a K block never splits an int8 block.
const QB: usize = 32;
const _: () = assert!(KC.is_multiple_of(QB));

static WEIGHTS_EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Marks every packed weight as stale. The engine's optimizers call this after each in-place
/// update; code that changes weights in place by other means must call it too.
pub(crate) fn weights_changed() {
    WEIGHTS_EPOCH.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// The epoch of packed weights whose originals were dropped: they never go stale.
pub(crate) const PINNED: u64 = u64::MAX;

/// The current weights epoch: a packed copy made in an earlier epoch may be stale.
pub(crate) fn weights_epoch() -> u64 {
    WEIGHTS_EPOCH.load(std::sync::atomic::Ordering::SeqCst)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// Inputs rounded to bf16, products accumulated in f32.
    Bf16,
    /// Weights as int8 with one f32 scale per block of 32 inputs of each output (GGUF's Q8_0,
    /// which stores the scale as f16): about 1.1 bytes per parameter. Inference only; computed
    /// as `Bf16` is, on the dequantized weights (inputs and weights rounded to bf16, products
    /// accumulated in f32).
    Q8,
}

pub struct PackedWeight {
    pub n: usize,
    pub k: usize,
    /// `weights_epoch()` when packed.
    pub epoch: u64,
    data: Packed,
}

enum Packed {
    /// [panel][k][NR]
    F32(Vec<f32>),
    /// [panel][k/2][NR][2] bf16 bits; k padded to even.
    Bf16(Vec<u32>),
    /// Int8 weights [panel][kq][NR] with k padded to kq, a multiple of QB, and their scales
    /// [panel][kq/QB][NR]: w = q · scale.
    Q8 { q: Vec<i8>, scales: Vec<f32> },
}

/// Whether this process runs the packed kernels for `p` (see `simd::level`): every precision
/// runs on AVX2+FMA and above. A `PackedWeight` can only be made where this holds, which is what
/// makes its kernels safe to call.
pub fn supported(_p: Precision) -> bool {
    level() >= Level::Avx2
}

/// The kernel family the packed kernels run in this process (`avx2`, `avx512`, `avx512bf16`),
/// or `baseline` where they do not run.
pub fn family_name() -> &'static str {
    level().name()
}

/// Every constructor checks the CPU: the kernels `matmul` calls need AVX2 and FMA at least.
fn assert_supported(p: Precision) {
    assert!(supported(p), "packed {p:?} kernels need AVX2 and FMA; this process runs {} (check matmul::supported first)", level().name());
}

/// Round-to-nearest-even f32 -> bf16 bits, branch-free so loops over it vectorize
/// (finite inputs; activations and weights here are finite).
#[inline(always)]
fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

impl PackedWeight {
    /// Packs W (n rows of k, row-major, as stored in Hugging Face checkpoints).
    pub fn pack(w: &[f32], n: usize, k: usize, precision: Precision) -> Self {
        assert_eq!(w.len(), n * k);
        let whole = |_, _| Ok::<_, std::convert::Infallible>(std::borrow::Cow::Borrowed(w));
        match Self::pack_in_pieces(n, k, precision, n, whole) {
            Ok(packed) => packed,
        }
    }

    /// Packs W (n rows of k) read in pieces of about `piece_rows` rows: `rows(r0, count)` gives
    /// rows r0..r0+count, row-major. A large table is packed without ever being whole in f32.
    pub fn pack_in_pieces<'a, E>(
        n: usize,
        k: usize,
        precision: Precision,
        piece_rows: usize,
        mut rows: impl FnMut(usize, usize) -> Result<std::borrow::Cow<'a, [f32]>, E>,
    ) -> Result<Self, E> {
        assert_supported(precision);
        let epoch = weights_epoch();
        // Whole panels per piece, so the pieces' panels simply follow each other.
        let piece_rows = piece_rows.max(1).next_multiple_of(NR);
        let mut data = Packed::with_capacity(precision, n, k);
        for r0 in (0..n).step_by(piece_rows) {
            let count = piece_rows.min(n - r0);
            let w = rows(r0, count)?;
            assert_eq!(w.len(), count * k, "rows {r0}..{} of a {n} × {k} weight", r0 + count);
            data.append(pack_panels(&w, count, k, precision));
        }
        Ok(PackedWeight { n, k, epoch, data })
    }

    /// Packs W = srcᵀ for src (rows × cols, row-major): W is (cols × rows). Backward passes need
    /// the transpose of a weight (dx = dy W) or of an activation (dW = dyᵀ x); each panel row of
    /// the transpose is a contiguous slice of src, so packing it directly skips the transpose.
    pub(crate) fn pack_transposed(src: &[f32], rows: usize, cols: usize, precision: Precision) -> Self {
        assert_eq!(src.len(), rows * cols);
        let mut w = Self::zeros(cols, rows, precision);
        w.fill_transposed(src, 0, rows);
        w
    }

    /// An all-zero W (n × k), to be filled by `fill_transposed`.
    pub(crate) fn zeros(n: usize, k: usize, precision: Precision) -> Self {
        assert_supported(precision);
        let panels = n.div_ceil(NR);
        let data = match precision {
            Precision::F32 => Packed::F32(vec![0f32; panels * k * NR]),
            Precision::Bf16 => Packed::Bf16(vec![0u32; panels * k.div_ceil(2) * NR]),
            Precision::Q8 => panic!("int8 weights are for inference only: they are packed whole, never filled in parts"),
        };
        PackedWeight { n, k, epoch: weights_epoch(), data }
    }

    /// Writes columns k0..k0+rows of W = srcᵀ from `part`, rows k0..k0+rows of src (each n
    /// long). For bf16, k0 must be even (columns are packed in pairs).
    pub(crate) fn fill_transposed(&mut self, part: &[f32], k0: usize, rows: usize) {
        let (n, k) = (self.n, self.k);
        assert!(part.len() == rows * n && k0 + rows <= k);
        match &mut self.data {
            Packed::F32(p) => p.par_chunks_mut(k * NR).enumerate().for_each(|(pi, panel)| {
                let (c0, width) = (pi * NR, NR.min(n - pi * NR));
                for r in 0..rows {
                    panel[(k0 + r) * NR..][..width].copy_from_slice(&part[r * n + c0..][..width]);
                }
            }),
            Packed::Bf16(p) => {
                assert!(k0.is_multiple_of(2), "bf16 columns are packed in pairs");
                let k2 = k.div_ceil(2);
                p.par_chunks_mut(k2 * NR).enumerate().for_each(|(pi, panel)| {
                    let (c0, width) = (pi * NR, NR.min(n - pi * NR));
                    for r in (0..rows).step_by(2) {
                        let lo = &part[r * n + c0..][..width];
                        let out = &mut panel[(k0 + r) / 2 * NR..][..width];
                        if r + 1 < rows {
                            interleave_bf16(lo, &part[(r + 1) * n + c0..][..width], out);
                        } else {
                            out.iter_mut().zip(lo).for_each(|(o, &v)| *o = bf16_bits(v) as u32);
                        }
                    }
                });
            }
            Packed::Q8 { .. } => unreachable!("no int8 weight is made by `zeros`"),
        }
    }

    /// Marks the packed copy as the only copy (the original weight was dropped).
    pub fn pinned(mut self) -> Self {
        self.epoch = PINNED;
        self
    }

    pub fn precision(&self) -> Precision {
        match self.data {
            Packed::F32(_) => Precision::F32,
            Packed::Bf16(_) => Precision::Bf16,
            Packed::Q8 { .. } => Precision::Q8,
        }
    }

    /// Bytes the packed weight holds.
    pub fn bytes(&self) -> usize {
        match &self.data {
            Packed::F32(p) => p.len() * 4,
            Packed::Bf16(p) => p.len() * 4,
            Packed::Q8 { q, scales } => q.len() + scales.len() * 4,
        }
    }

    /// Row `r` of W (k values) as the kernels see it: rounded to bf16, or dequantized from int8.
    /// A tied output head serves as the embedding table this way.
    pub fn row(&self, r: usize) -> Vec<f32> {
        assert!(r < self.n, "row {r} of a {} × {} weight", self.n, self.k);
        let (pi, c, k) = (r / NR, r % NR, self.k);
        match &self.data {
            Packed::F32(p) => (0..k).map(|kk| p[(pi * k + kk) * NR + c]).collect(),
            Packed::Bf16(p) => {
                let k2 = k.div_ceil(2);
                let pair = |kk: usize| p[(pi * k2 + kk / 2) * NR + c];
                // The even input is a pair's low half, the odd one its high half.
                (0..k).map(|kk| f32::from_bits(if kk % 2 == 0 { pair(kk) << 16 } else { pair(kk) & 0xFFFF_0000 })).collect()
            }
            Packed::Q8 { q, scales } => {
                let kq = k.next_multiple_of(QB);
                (0..k).map(|kk| q[(pi * kq + kk) * NR + c] as f32 * scales[(pi * (kq / QB) + kk / QB) * NR + c]).collect()
            }
        }
    }

    /// y (m × n) = x (m × k) · Wᵀ.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        self.matmul_in(level(), x, m)
    }

    /// `matmul` with the kernels of `family`, which must not be above this process's
    /// (`simd::level`); tests compare families with it.
    fn matmul_in(&self, family: Level, x: &[f32], m: usize) -> Vec<f32> {
        assert!(Level::Avx2 <= family && family <= level(), "no packed kernels of family {} here", family.name());
        assert_eq!(x.len(), m * self.k);
        let (n, k) = (self.n, self.k);
        let mut y = vec![0f32; m * n];
        let out = SyncPtr(y.as_mut_ptr());
        let rows = match &self.data {
            Packed::Bf16(_) | Packed::Q8 { .. } => Rows::pack_bf16(x, m, k, family),
            Packed::F32(_) => Rows::F32(x),
        };
        // Row chunks keep x's block in cache while the panels stream by; within a chunk each task
        // computes whole panels and writes its own columns of y.
        for r0 in (0..m).step_by(MC) {
            let mc = MC.min(m - r0);
            (0..n.div_ceil(NR)).into_par_iter().for_each(|pi| {
                let cols = NR.min(n - pi * NR);
                let mut tmp = Vec::new();
                let (dst, ld) = if cols == NR {
                    // SAFETY: r0 < m and pi * NR + NR <= n, so the offset lies inside y (m × n).
                    (unsafe { out.get().add(r0 * n + pi * NR) }, n)
                } else {
                    tmp = vec![0f32; mc * NR];
                    (tmp.as_mut_ptr(), NR)
                };
                // SAFETY: `family` is at least AVX2 and at most `level()`, which the CPU has
                // (asserted above). The kernel writes mc rows of NR columns at stride ld from
                // dst: inside y (rows r0..r0+mc, this task's own columns, disjoint from every
                // other task's) or inside tmp (mc × NR).
                unsafe { run_panel(family, &rows, &self.data, r0, mc, k, pi, dst, ld) }
                if cols < NR {
                    for r in 0..mc {
                        // SAFETY: row r0 + r < m of y, columns pi * NR .. pi * NR + cols <= n,
                        // written by this task alone; tmp holds mc × NR values.
                        unsafe { std::ptr::copy_nonoverlapping(tmp.as_ptr().add(r * NR), out.get().add((r0 + r) * n + pi * NR), cols) };
                    }
                }
            });
        }
        y
    }
}

/// A pointer that tasks share to write disjoint parts of one buffer.
#[derive(Clone, Copy)]
struct SyncPtr(*mut f32);
// SAFETY: the pointer outlives the parallel loop that shares it (it points into a Vec owned by
// the caller of that loop), and the tasks write disjoint elements through it.
unsafe impl Send for SyncPtr {}
// SAFETY: as for Send: no two tasks touch the same element.
unsafe impl Sync for SyncPtr {}
impl SyncPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// The rows of x in the form a family's kernels read.
enum Rows<'a> {
    F32(&'a [f32]),
    /// Rounded to bf16 and paired (k padded to even), one u32 per pair: the dot-product kernels.
    Bf16Pairs(Vec<u32>),
    /// Rounded to bf16 and widened back to f32 (k padded to even): the AVX2 bf16 kernel.
    Bf16Widened(Vec<f32>),
}

impl<'a> Rows<'a> {
    fn pack_bf16(x: &'a [f32], m: usize, k: usize, family: Level) -> Self {
        let pairs = pack_rows_bf16(x, m, k);
        if family == Level::Avx512Bf16 {
            return Rows::Bf16Pairs(pairs);
        }
        Rows::Bf16Widened(pairs.iter().flat_map(|&p| [f32::from_bits(p << 16), f32::from_bits(p & 0xFFFF_0000)]).collect())
    }
}

/// Runs the kernel of `family` for precision of `w` over rows r0..r0+mc of x and panel `pi`.
///
/// # Safety
/// The CPU has `family`'s features and `family` is at least AVX2; `rows` was made for `family`
/// from m × k values with r0 + mc <= m; `dst` is valid for writes (and reads) of mc rows of NR
/// values at stride ld.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn run_panel(family: Level, rows: &Rows, w: &Packed, r0: usize, mc: usize, k: usize, pi: usize, dst: *mut f32, ld: usize) {
    let k2 = k.div_ceil(2);
    // SAFETY: the caller's contract; each kernel is called with the slices its own contract
    // names (x from row r0, the panel pi of W).
    unsafe {
        match (rows, w) {
            (Rows::F32(x), Packed::F32(w)) => {
                let (x, panel) = (&x[r0 * k..], &w[pi * k * NR..(pi + 1) * k * NR]);
                if family >= Level::Avx512 {
                    avx512::f32_panel(x, mc, k, panel, dst, ld)
                } else {
                    avx2::f32_panel(x, mc, k, panel, dst, ld)
                }
            }
            (Rows::Bf16Pairs(x), Packed::Bf16(w)) => avx512::bf16_panel(&x[r0 * k2..], mc, k2, &w[pi * k2 * NR..(pi + 1) * k2 * NR], dst, ld),
            (Rows::Bf16Widened(x), Packed::Bf16(w)) => avx2::bf16_panel(&x[r0 * 2 * k2..], mc, k2, &w[pi * k2 * NR..(pi + 1) * k2 * NR], dst, ld),
            (rows, Packed::Q8 { q, scales }) => q8_panel(rows, r0, mc, k, q, scales, pi, dst, ld),
            _ => unreachable!("rows are made for the weight's precision"),
        }
    }
}

thread_local! {
    /// One K block of a panel widened from int8: to f32, then to the bf16 pairs the kernels
    /// read; reused across a thread's calls.
    static Q8_BLOCK: std::cell::RefCell<(Vec<f32>, Vec<u32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Panel `pi` of an int8 weight over rows r0..r0+mc: each K block is dequantized and rounded to
/// bf16 pairs in a per-thread buffer (in cache) and run through the bf16 kernel of the rows'
/// family, with the K blocks of a bf16 weight, so the result is exactly that of the bf16 weight
/// packed from the dequantized values.
///
/// # Safety
/// As `run_panel`; `rows` holds bf16 rows (`Rows::pack_bf16`) of k values.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn q8_panel(rows: &Rows, r0: usize, mc: usize, k: usize, q: &[i8], scales: &[f32], pi: usize, dst: *mut f32, ld: usize) {
    let (kq, k2) = (k.next_multiple_of(QB), k.div_ceil(2));
    let (q, scales) = (&q[pi * kq * NR..(pi + 1) * kq * NR], &scales[pi * (kq / QB) * NR..(pi + 1) * (kq / QB) * NR]);
    Q8_BLOCK.with_borrow_mut(|(wide, pairs)| {
        wide.resize(KC * NR, 0.0);
        pairs.resize(KC / 2 * NR, 0);
        let mut k0 = 0;
        while k0 < k {
            // kc2 pairs; an odd k's last pair takes its high half from the zero padding of q.
            let kc2 = (KC / 2).min(k2 - k0 / 2);
            widen_q8(&q[k0 * NR..(k0 + 2 * kc2) * NR], &scales[k0 / QB * NR..], &mut wide[..2 * kc2 * NR]);
            for (p, out) in pairs[..kc2 * NR].chunks_exact_mut(NR).enumerate() {
                interleave_bf16(&wide[2 * p * NR..][..NR], &wide[(2 * p + 1) * NR..][..NR], out);
            }
            let block = &pairs[..kc2 * NR];
            // SAFETY: the caller's contract; pairs k0/2..k0/2+kc2 of every row lie inside the
            // rows, and the block holds kc2 × NR pairs.
            unsafe {
                match rows {
                    Rows::Bf16Pairs(x) => avx512::bf16_block(&x[r0 * k2 + k0 / 2..], k2, mc, kc2, block, dst, ld, k0 > 0),
                    Rows::Bf16Widened(x) => avx2::bf16_block(&x[(r0 * k2 + k0 / 2) * 2..], 2 * k2, mc, kc2, block, dst, ld, k0 > 0),
                    Rows::F32(_) => unreachable!("int8 weights run on bf16 rows"),
                }
            }
            k0 += 2 * kc2;
        }
    });
}

crate::multiversion! {
/// out[kk][c] = q[kk][c] · scales[kk / QB][c] for the kk rows of NR weights in `q`.
fn widen_q8(q: &[i8], scales: &[f32], out: &mut [f32]) {
    for ((o, qr), kk) in out.chunks_exact_mut(NR).zip(q.chunks_exact(NR)).zip(0..) {
        let s = &scales[kk / QB * NR..][..NR];
        for c in 0..NR {
            o[c] = qr[c] as f32 * s[c];
        }
    }
}
}

/// W (n rows of k) packed into panels of `precision`.
fn pack_panels(w: &[f32], n: usize, k: usize, precision: Precision) -> Packed {
    let panels = n.div_ceil(NR);
    match precision {
        Precision::F32 => {
            let mut p = vec![0f32; panels * k * NR];
            p.par_chunks_mut(k * NR).enumerate().for_each(|(pi, panel)| {
                let rows = NR.min(n - pi * NR);
                transpose_cols_into(&w[pi * NR * k..][..rows * k], k, 0, k, rows, panel, NR);
            });
            Packed::F32(p)
        }
        Precision::Bf16 => {
            let k2 = k.div_ceil(2);
            let mut p = vec![0u32; panels * k2 * NR];
            p.par_chunks_mut(k2 * NR).enumerate().for_each(|(pi, panel)| {
                // Rows to bf16 pairs first (vectorized), then the pairs transposed into the panel.
                let rows = NR.min(n - pi * NR);
                let mut pairs = vec![0u32; rows * k2];
                for (c, out) in pairs.chunks_mut(k2).enumerate() {
                    row_to_bf16_pairs(&w[(pi * NR + c) * k..][..k], out);
                }
                transpose_cols_into(&pairs, k2, 0, k2, rows, panel, NR);
            });
            Packed::Bf16(p)
        }
        Precision::Q8 => pack_q8(w, n, k),
    }
}

impl Packed {
    /// Empty storage with room for a whole n × k weight.
    fn with_capacity(precision: Precision, n: usize, k: usize) -> Self {
        let panels = n.div_ceil(NR);
        match precision {
            Precision::F32 => Packed::F32(Vec::with_capacity(panels * k * NR)),
            Precision::Bf16 => Packed::Bf16(Vec::with_capacity(panels * k.div_ceil(2) * NR)),
            Precision::Q8 => {
                let kq = k.next_multiple_of(QB);
                Packed::Q8 { q: Vec::with_capacity(panels * kq * NR), scales: Vec::with_capacity(panels * kq / QB * NR) }
            }
        }
    }

    /// Appends the panels of `piece` (the same precision and k).
    fn append(&mut self, piece: Packed) {
        match (self, piece) {
            (Packed::F32(a), Packed::F32(b)) => a.extend(b),
            (Packed::Bf16(a), Packed::Bf16(b)) => a.extend(b),
            (Packed::Q8 { q, scales }, Packed::Q8 { q: bq, scales: bs }) => {
                q.extend(bq);
                scales.extend(bs);
            }
            _ => unreachable!("pieces of one weight share its precision"),
        }
    }
}

/// Quantizes W (n rows of k) to int8 blocks of QB inputs, each with the scale max|w| / 127
/// (GGUF's Q8_0 rule), laid out in panels like the f32 weights.
fn pack_q8(w: &[f32], n: usize, k: usize) -> Packed {
    let (kq, panels) = (k.next_multiple_of(QB), n.div_ceil(NR));
    let mut q = vec![0i8; panels * kq * NR];
    let mut scales = vec![0f32; panels * (kq / QB) * NR];
    q.par_chunks_mut(kq * NR).zip(scales.par_chunks_mut(kq / QB * NR)).enumerate().for_each(|(pi, (qp, sp))| {
        for c in 0..NR.min(n - pi * NR) {
            let row = &w[(pi * NR + c) * k..][..k];
            for (b, block) in row.chunks(QB).enumerate() {
                let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
                let scale = amax / 127.0;
                let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                sp[b * NR + c] = scale;
                for (j, v) in block.iter().enumerate() {
                    qp[(b * QB + j) * NR + c] = (v * inv).round() as i8;
                }
            }
        }
    });
    Packed::Q8 { q, scales }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn run_panel(_: Level, _: &Rows, _: &Packed, _: usize, _: usize, _: usize, _: usize, _: *mut f32, _: usize) {
    unreachable!("no packed kernels for this architecture (supported() is false)")
}

/// x rows as bf16 pairs (k padded to even), one u32 per pair.
fn pack_rows_bf16(x: &[f32], m: usize, k: usize) -> Vec<u32> {
    let k2 = k.div_ceil(2);
    let mut out = vec![0u32; m * k2];
    out.par_chunks_mut(k2).zip(x.par_chunks(k)).for_each(|(o, row)| row_to_bf16_pairs(row, o));
    out
}

crate::multiversion! {
fn row_to_bf16_pairs(row: &[f32], out: &mut [u32]) {
    let pairs = row.len() / 2;
    for (kk, o) in out[..pairs].iter_mut().enumerate() {
        *o = bf16_bits(row[2 * kk]) as u32 | ((bf16_bits(row[2 * kk + 1]) as u32) << 16);
    }
    if row.len() % 2 == 1 {
        out[pairs] = bf16_bits(row[row.len() - 1]) as u32;
    }
}
}

crate::multiversion! {
/// out[c] = bf16(lo[c]) | bf16(hi[c]) << 16: one packed pair per column.
fn interleave_bf16(lo: &[f32], hi: &[f32], out: &mut [u32]) {
    for ((o, &a), &b) in out.iter_mut().zip(lo).zip(hi) {
        *o = bf16_bits(a) as u32 | ((bf16_bits(b) as u32) << 16);
    }
}
}

/// The transpose of a row-major (rows × cols) matrix.
pub fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const COLS: usize = 64;
    let mut out = vec![0f32; rows * cols];
    if rows == 0 || cols == 0 {
        return out;
    }
    // Each task writes COLS whole rows of the output (COLS columns of the input).
    out.par_chunks_mut(COLS * rows).enumerate().for_each(|(tc, block)| {
        let c0 = tc * COLS;
        let cn = COLS.min(cols - c0);
        transpose_cols_into(a, cols, c0, cn, rows, block, rows);
    });
    out
}

/// out[c * out_stride + r] = src[r * src_stride + c0 + c] for r < rows, c < cn: columns
/// c0..c0+cn of a row-major block transposed into rows `out_stride` long (a transpose's rows,
/// or a panel's).
fn transpose_cols_into<T: Copy>(src: &[T], src_stride: usize, c0: usize, cn: usize, rows: usize, out: &mut [T], out_stride: usize) {
    const TILE: usize = 16;
    for r0 in (0..rows).step_by(TILE) {
        let rn = TILE.min(rows - r0);
        for c in 0..cn {
            // Contiguous writes; the tile's TILE source rows stay in L1 across its columns.
            let dst = &mut out[c * out_stride + r0..][..rn];
            for (r, d) in dst.iter_mut().enumerate() {
                *d = src[(r0 + r) * src_stride + c0 + c];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                y[r * n + c] = (0..k).map(|i| x[r * k + i] as f64 * w[c * k + i] as f64).sum::<f64>() as f32;
            }
        }
        y
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    /// The families whose kernels this process can run, weakest first.
    fn families_here() -> Vec<Level> {
        Level::ALL.into_iter().filter(|&l| Level::Avx2 <= l && l <= level()).collect()
    }

    #[test]
    fn packed_kernels_match_a_plain_loop_in_every_family() {
        // Odd sizes exercise partial panels, partial row blocks (of 8, 6 and 4 rows), odd k and
        // several K blocks.
        for &(m, n, k) in &[(1, 5, 3), (9, 33, 17), (64, 100, 1500), (13, 64, 2050)] {
            let (x, w) = (data(m * k, 1), data(n * k, 7));
            let want = reference(&x, &w, m, n, k);
            for p in [Precision::F32, Precision::Bf16] {
                if !supported(p) {
                    // Where the kernels cannot run, making a packed weight must refuse (the
                    // check that keeps safe code from running instructions the CPU lacks).
                    let refused = std::panic::catch_unwind(|| PackedWeight::pack(&w, n, k, p)).is_err()
                        && std::panic::catch_unwind(|| PackedWeight::zeros(n, k, p)).is_err();
                    assert!(refused, "{p:?} packed without the CPU features (family {})", level().name());
                    continue;
                }
                let packed = PackedWeight::pack(&w, n, k, p);
                let from_transpose = PackedWeight::pack_transposed(&transpose(&w, n, k), k, n, p);
                assert_eq!(packed.matmul(&x, m), from_transpose.matmul(&x, m), "{p:?}: packing Wᵀ's transpose packs W");
                // bf16 keeps 8 bits of mantissa: allow a relative error that grows with sqrt(k).
                let tol = if p == Precision::F32 { 1e-4 } else { 2e-2 } * (k as f32).sqrt();
                let mut first: Option<(Level, Vec<f32>)> = None;
                for family in families_here() {
                    let got = packed.matmul_in(family, &x, m);
                    for (a, b) in got.iter().zip(&want) {
                        assert!((a - b).abs() <= tol, "{p:?} {} m={m} n={n} k={k}: {a} vs {b}", family.name());
                    }
                    // Every family accumulates each output in the same order with fused
                    // multiply-adds (bf16 products are exact in f32), so families agree exactly.
                    match &first {
                        None => first = Some((family, got)),
                        Some((f0, y0)) => assert!(&got == y0, "{p:?}: {} and {} differ (m={m} n={n} k={k})", family.name(), f0.name()),
                    }
                }
            }
        }
    }

    #[test]
    fn rows_read_back_as_the_kernels_see_them() {
        if !supported(Precision::F32) {
            return;
        }
        let (n, k) = (40, 35);
        let w = data(n * k, 5);
        let (f, b) = (PackedWeight::pack(&w, n, k, Precision::F32), PackedWeight::pack(&w, n, k, Precision::Bf16));
        for r in [0, 31, 32, 39] {
            let want = &w[r * k..][..k];
            assert_eq!(f.row(r), want, "f32 row {r}");
            let rounded: Vec<f32> = want.iter().map(|&v| f32::from_bits((bf16_bits(v) as u32) << 16)).collect();
            assert_eq!(b.row(r), rounded, "bf16 row {r}");
        }
        // Packed in pieces (rounded up to whole panels), the same weight.
        let x = data(3 * k, 2);
        for p in [Precision::F32, Precision::Bf16, Precision::Q8] {
            let whole = PackedWeight::pack(&w, n, k, p);
            let mut asked = Vec::new();
            let pieces = PackedWeight::pack_in_pieces(n, k, p, 20, |r0, count| {
                asked.push((r0, count));
                Ok::<_, ()>(std::borrow::Cow::Borrowed(&w[r0 * k..(r0 + count) * k]))
            })
            .unwrap();
            assert_eq!(asked, [(0, 32), (32, 8)], "{p:?}");
            assert!(pieces.matmul(&x, 3) == whole.matmul(&x, 3) && pieces.bytes() == whole.bytes(), "{p:?}");
        }
    }

    #[test]
    fn int8_weights_give_the_bf16_product_of_their_dequantized_values_in_every_family() {
        // Partial panels, k below, at and across int8 and K blocks.
        for &(m, n, k) in &[(1, 5, 3), (9, 33, 17), (13, 64, 2050), (7, 40, 1056)] {
            let (x, w) = (data(m * k, 1), data(n * k, 7));
            if !supported(Precision::Q8) {
                assert!(std::panic::catch_unwind(|| PackedWeight::pack(&w, n, k, Precision::Q8)).is_err());
                return;
            }
            let q = PackedWeight::pack(&w, n, k, Precision::Q8);
            assert!(q.bytes() < n.div_ceil(NR) * NR * k.next_multiple_of(QB) * 9 / 8 + 1, "about a byte per weight");
            let dequantized: Vec<f32> = (0..n).flat_map(|r| q.row(r)).collect();
            for (r, (a, b)) in dequantized.chunks(k).zip(w.chunks(k)).enumerate() {
                for (blk_a, blk_b) in a.chunks(QB).zip(b.chunks(QB)) {
                    // Within half a step (max|w| / 127) of the original, block by block.
                    let step = blk_b.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                    for (u, v) in blk_a.iter().zip(blk_b) {
                        assert!((u - v).abs() <= step * 0.5001, "row {r}: {u} vs {v} (step {step})");
                    }
                }
            }
            let b = PackedWeight::pack(&dequantized, n, k, Precision::Bf16);
            let first = q.matmul_in(families_here()[0], &x, m);
            for family in families_here() {
                let got = q.matmul_in(family, &x, m);
                assert!(got == b.matmul_in(family, &x, m), "{} m={m} n={n} k={k}", family.name());
                assert!(got == first, "int8 results differ between kernel families ({}) m={m} n={n} k={k}", family.name());
            }
        }
    }

    #[test]
    fn only_families_the_process_runs_are_accepted() {
        if !supported(Precision::F32) {
            return;
        }
        let w = PackedWeight::pack(&data(64, 3), 8, 8, Precision::F32);
        assert!(std::panic::catch_unwind(|| w.matmul_in(Level::Baseline, &data(8, 1), 1)).is_err());
        if level() < Level::Avx512Bf16 {
            assert!(std::panic::catch_unwind(|| w.matmul_in(Level::Avx512Bf16, &data(8, 1), 1)).is_err());
        }
    }
}
