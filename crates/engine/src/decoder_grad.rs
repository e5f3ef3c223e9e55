//! The decoder's training pass written out by hand for the CPU (Llama and Qwen2 families): a
//! forward that keeps what its backward needs, and that backward, with every product on the
//! packed kernels (AVX-512 or AVX2).
//!
//! candle's autograd runs the same math as a graph of small composite ops (an RMSNorm, a RoPE
//! or a softmax is a dozen tensors each), allocating a fresh tensor per op and holding every
//! intermediate until the backward; on two cores that costs about as much as the matmuls. Here
//! a layer keeps its input, the rotated q and k, v, the attention output with its rows'
//! log-sum-exps, the residual after attention and the MLP's gate and up projections. Normalized
//! inputs, attention probabilities and the MLP activation are recomputed in the backward.
//!
//! How it joins candle's autograd: in `Mode::Grad`, `Model::forward_hidden` returns the final
//! hidden states as a fresh leaf and parks a tape on this thread. `backward(loss)` runs candle's
//! backward from the loss down to that leaf (output head, losses, heads), then runs the tape back
//! through the decoder and adds each weight's gradient to the store. Callers of a loss that went
//! through `Mode::Grad` use `backward` in place of `Tensor::backward`.

use crate::config::ModelConfig;
use crate::error::Result;
use crate::matmul::{transpose, PackedWeight, Precision};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use rayon::prelude::*;
use std::cell::RefCell;

/// One layer's trainable weights.
pub(crate) struct LayerVars {
    pub attn_norm: Var,
    pub ffn_norm: Var,
    pub q: Var,
    pub k: Var,
    pub v: Var,
    pub o: Var,
    pub q_bias: Option<Var>,
    pub k_bias: Option<Var>,
    pub v_bias: Option<Var>,
    pub gate: Var,
    pub up: Var,
    pub down: Var,
}

/// The decoder's trainable weights (the output head stays with candle's graph).
pub(crate) struct DecoderVars {
    pub embed: Var,
    pub norm: Var,
    pub layers: Vec<LayerVars>,
}

/// Sizes of one pass: `b` rows of `t` tokens.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    t: usize,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// Query heads per key/value head.
    groups: usize,
    eps: f32,
    /// Attention score scale, 1 / sqrt(query_pre_attn_scalar).
    scale: f32,
    pad: Option<u32>,
}

impl Dims {
    /// Token rows in all.
    fn n(&self) -> usize {
        self.b * self.t
    }

    fn q_width(&self) -> usize {
        self.heads * self.head_dim
    }

    fn kv_width(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Rows of one key/value head's query block: its `groups` heads, `t` queries each.
    fn group_rows(&self) -> usize {
        self.groups * self.t
    }
}

/// What one layer's backward reads.
struct LayerTape {
    x: Vec<f32>,
    /// Inverse RMS of each row of `x`.
    r1: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    o: Vec<f32>,
    /// Log-sum-exp of each query row's scaled scores, in `attention_forward`'s block order.
    lse: Vec<f32>,
    x2: Vec<f32>,
    r2: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
}

/// A forward pass waiting for the gradient of its output.
struct Tape {
    leaf: Var,
    vars: DecoderVars,
    dims: Dims,
    ids: Vec<u32>,
    rope: Rope,
    layers: Vec<LayerTape>,
    x_final: Vec<f32>,
    r_final: Vec<f32>,
    precision: Precision,
}

thread_local! {
    /// Tapes of this thread's `Mode::Grad` forwards not yet run backward.
    static PENDING: RefCell<Vec<Tape>> = const { RefCell::new(Vec::new()) };
}

/// Gradients of `loss` with respect to every variable it depends on, through candle's graph and
/// the hand-written decoder passes of this thread. Tapes the loss does not depend on stay parked
/// for a later loss.
pub fn backward(loss: &Tensor) -> Result<GradStore> {
    let mut grads = loss.backward()?;
    let tapes = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let mut unused = Vec::new();
    for tape in tapes {
        match grads.remove(tape.leaf.as_tensor()) {
            Some(d_hidden) => tape.backward(&d_hidden, &mut grads)?,
            None => unused.push(tape),
        }
    }
    PENDING.with(|p| *p.borrow_mut() = unused);
    Ok(grads)
}

fn with_host<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    Ok(crate::train_ops::with_host(t, f)?)
}

/// The final hidden states (B, T, H) of right-padded rows, as a leaf whose gradient `backward`
/// carries on through the decoder.
pub(crate) fn forward(vars: DecoderVars, cfg: &ModelConfig, ids: &Tensor, precision: Precision) -> Result<Tensor> {
    let (b, t) = ids.dims2()?;
    let ids: Vec<u32> = ids.flatten_all()?.to_vec1()?;
    let dims = Dims {
        b,
        t,
        hidden: cfg.hidden_size,
        heads: cfg.num_heads,
        kv_heads: cfg.num_kv_heads,
        head_dim: cfg.head_dim,
        groups: cfg.num_heads / cfg.num_kv_heads,
        eps: cfg.rms_norm_eps as f32,
        scale: (1.0 / cfg.query_pre_attn_scalar.sqrt()) as f32,
        pad: cfg.pad_token_id,
    };
    let rope = Rope::new(cfg.rope_theta, cfg.head_dim, t);
    let mut x = with_host(vars.embed.as_tensor(), |table| {
        let h = dims.hidden;
        ids.iter().flat_map(|&id| table[id as usize * h..][..h].iter().copied()).collect::<Vec<f32>>()
    })?;
    let mut layers = Vec::with_capacity(vars.layers.len());
    for lv in &vars.layers {
        let (next, tape) = layer_forward(lv, &dims, x, &rope, precision)?;
        layers.push(tape);
        x = next;
    }
    let r_final = inv_rms(&x, dims.hidden, dims.eps);
    let hidden = with_host(vars.norm.as_tensor(), |w| scale_rows(&x, &r_final, w))?;
    let leaf = Var::from_tensor(&Tensor::from_vec(hidden, (b, t, dims.hidden), &Device::Cpu)?)?;
    let out = leaf.as_tensor().clone();
    PENDING.with(|p| p.borrow_mut().push(Tape { leaf, vars, dims, ids, rope, layers, x_final: x, r_final, precision }));
    Ok(out)
}

fn layer_forward(lv: &LayerVars, d: &Dims, x: Vec<f32>, rope: &Rope, p: Precision) -> Result<(Vec<f32>, LayerTape)> {
    let n = d.n();
    let r1 = inv_rms(&x, d.hidden, d.eps);
    let h1 = with_host(lv.attn_norm.as_tensor(), |w| scale_rows(&x, &r1, w))?;
    let mut q = project(&h1, n, &lv.q, lv.q_bias.as_ref(), p)?;
    let mut k = project(&h1, n, &lv.k, lv.k_bias.as_ref(), p)?;
    let v = project(&h1, n, &lv.v, lv.v_bias.as_ref(), p)?;
    drop(h1);
    rope.rotate(&mut q, d.heads, d.head_dim, false);
    rope.rotate(&mut k, d.kv_heads, d.head_dim, false);
    let (o, lse) = attention_forward(&q, &k, &v, d, p);
    let mut x2 = project(&o, n, &lv.o, None, p)?;
    add_into(&mut x2, &x);
    let r2 = inv_rms(&x2, d.hidden, d.eps);
    let h2 = with_host(lv.ffn_norm.as_tensor(), |w| scale_rows(&x2, &r2, w))?;
    let gate = project(&h2, n, &lv.gate, None, p)?;
    let up = project(&h2, n, &lv.up, None, p)?;
    drop(h2);
    let mut out = project(&swiglu(&gate, &up), n, &lv.down, None, p)?;
    add_into(&mut out, &x2);
    Ok((out, LayerTape { x, r1, q, k, v, o, lse, x2, r2, gate, up }))
}

impl Tape {
    fn backward(mut self, d_hidden: &Tensor, grads: &mut GradStore) -> Result<()> {
        let dh: Vec<f32> = d_hidden.flatten_all()?.to_vec1()?;
        let (d, p) = (self.dims, self.precision);
        let mut sink = GradSink(grads);
        let (mut dx, dw) = with_host(self.vars.norm.as_tensor(), |w| rms_backward(&dh, &self.x_final, &self.r_final, w, d.hidden))?;
        sink.add(&self.vars.norm, dw)?;
        drop((dh, std::mem::take(&mut self.x_final)));
        // Layers are popped so each one's saved activations are freed as soon as it is done.
        while let Some(tape) = self.layers.pop() {
            dx = layer_backward(&self.vars.layers[self.layers.len()], &d, tape, dx, &self.rope, p, &mut sink)?;
        }
        let vocab = self.vars.embed.dim(0)?;
        let mut d_embed = vec![0f32; vocab * d.hidden];
        for (row, &id) in dx.chunks(d.hidden).zip(&self.ids) {
            // transformers' nn.Embedding(padding_idx): the pad row gets no input-side gradient.
            if Some(id) != d.pad {
                add_into(&mut d_embed[id as usize * d.hidden..][..d.hidden], row);
            }
        }
        sink.add(&self.vars.embed, d_embed)
    }
}

#[allow(clippy::too_many_arguments)]
fn layer_backward(lv: &LayerVars, d: &Dims, s: LayerTape, dy: Vec<f32>, rope: &Rope, p: Precision, sink: &mut GradSink) -> Result<Vec<f32>> {
    let (n, h) = (d.n(), d.hidden);
    let inter = s.gate.len() / n;
    // MLP: out = x2 + down(silu(gate) · up)
    let m_t = PackedWeight::pack_transposed(&swiglu(&s.gate, &s.up), n, inter, p);
    sink.add(&lv.down, weight_grad(&dy, &m_t, n, h))?;
    drop(m_t);
    let dm = input_grad(&dy, n, &lv.down, p)?;
    let (d_gate, d_up) = swiglu_backward(&dm, &s.gate, &s.up);
    drop((dm, s.gate, s.up));
    // gate and up share their input: its transpose is packed once for both weight gradients.
    let h2_t = PackedWeight::pack_transposed(&with_host(lv.ffn_norm.as_tensor(), |w| scale_rows(&s.x2, &s.r2, w))?, n, h, p);
    sink.add(&lv.gate, weight_grad(&d_gate, &h2_t, n, inter))?;
    sink.add(&lv.up, weight_grad(&d_up, &h2_t, n, inter))?;
    drop(h2_t);
    let mut dh2 = input_grad(&d_gate, n, &lv.gate, p)?;
    add_into(&mut dh2, &input_grad(&d_up, n, &lv.up, p)?);
    drop((d_gate, d_up));
    let (mut dx2, dw) = with_host(lv.ffn_norm.as_tensor(), |w| rms_backward(&dh2, &s.x2, &s.r2, w, h))?;
    sink.add(&lv.ffn_norm, dw)?;
    add_into(&mut dx2, &dy);
    drop((dy, dh2, s.x2));
    // Attention: x2 = x + o_proj(attention(rope(q), rope(k), v))
    sink.add(&lv.o, weight_grad(&dx2, &PackedWeight::pack_transposed(&s.o, n, d.q_width(), p), n, h))?;
    let d_o = input_grad(&dx2, n, &lv.o, p)?;
    let (mut dq, mut dk, dv) = attention_backward(&s.q, &s.k, &s.v, &s.o, &s.lse, &d_o, d, p);
    drop(d_o);
    rope.rotate(&mut dq, d.heads, d.head_dim, true);
    rope.rotate(&mut dk, d.kv_heads, d.head_dim, true);
    // q, k and v share their input: its transpose is packed once for the three weight gradients.
    let h1_t = PackedWeight::pack_transposed(&with_host(lv.attn_norm.as_tensor(), |w| scale_rows(&s.x, &s.r1, w))?, n, h, p);
    let mut dh1 = vec![0f32; n * h];
    for (dproj, w, bias) in [(dq, &lv.q, &lv.q_bias), (dk, &lv.k, &lv.k_bias), (dv, &lv.v, &lv.v_bias)] {
        let width = dproj.len() / n;
        sink.add(w, weight_grad(&dproj, &h1_t, n, width))?;
        if let Some(b) = bias {
            sink.add(b, column_sums(&dproj, width))?;
        }
        add_into(&mut dh1, &input_grad(&dproj, n, w, p)?);
    }
    drop(h1_t);
    let (mut dx, dw) = with_host(lv.attn_norm.as_tensor(), |w| rms_backward(&dh1, &s.x, &s.r1, w, h))?;
    sink.add(&lv.attn_norm, dw)?;
    add_into(&mut dx, &dx2);
    Ok(dx)
}

/// Adds gradients to the store (summing with what is there: a tied embedding also has the
/// output head's).
struct GradSink<'a>(&'a mut GradStore);

impl GradSink<'_> {
    fn add(&mut self, var: &Var, grad: Vec<f32>) -> Result<()> {
        let g = Tensor::from_vec(grad, var.shape(), &Device::Cpu)?;
        let g = match self.0.remove(var.as_tensor()) {
            Some(old) => (old + g)?,
            None => g,
        };
        self.0.insert(var.as_tensor(), g);
        Ok(())
    }
}

/// x (m × k) · Wᵀ (+ bias) for the weight W (n × k).
fn project(x: &[f32], m: usize, w: &Var, bias: Option<&Var>, p: Precision) -> Result<Vec<f32>> {
    let (n, k) = w.dims2()?;
    let mut y = with_host(w.as_tensor(), |wv| PackedWeight::pack(wv, n, k, p).matmul(x, m))?;
    if let Some(b) = bias {
        with_host(b.as_tensor(), |bv| y.par_chunks_mut(n).for_each(|row| add_into(row, bv)))?;
    }
    Ok(y)
}

/// dy (m × n) · W for the weight W (n × k): the gradient of a projection's input.
fn input_grad(dy: &[f32], m: usize, w: &Var, p: Precision) -> Result<Vec<f32>> {
    let (n, k) = w.dims2()?;
    with_host(w.as_tensor(), |wv| PackedWeight::pack_transposed(wv, n, k, p).matmul(dy, m))
}

/// dyᵀ (n × m) · x (m × k), the gradient of a projection's weight, with xᵀ already packed
/// (`PackedWeight::pack_transposed(x, m, k, p)`).
fn weight_grad(dy: &[f32], x_t: &PackedWeight, m: usize, n: usize) -> Vec<f32> {
    x_t.matmul(&transpose(dy, m, n), n)
}

/// Rotary tables (t × head_dim/2) for positions 0..t, as the model's.
struct Rope {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
    t: usize,
}

impl Rope {
    fn new(theta: f64, head_dim: usize, t: usize) -> Self {
        let (cos, sin) = crate::layer_math::rope_cos_sin(theta, head_dim, 0..t);
        Rope { cos, sin, half: head_dim / 2, t }
    }

    /// Rotates each head of each row (rows × heads·head_dim, row r at position r mod t) in the
    /// half-split layout; `inverse` rotates back, which is also the rotation's backward.
    fn rotate(&self, x: &mut [f32], heads: usize, head_dim: usize, inverse: bool) {
        let half = self.half;
        x.par_chunks_mut(heads * head_dim).enumerate().for_each(|(r, row)| {
            let pos = r % self.t;
            let (cos, sin) = (&self.cos[pos * half..][..half], &self.sin[pos * half..][..half]);
            for head in row.chunks_mut(head_dim) {
                rotate_half(head, cos, sin, inverse);
            }
        });
    }
}

crate::multiversion! {
fn rotate_half(head: &mut [f32], cos: &[f32], sin: &[f32], inverse: bool) {
    let (a, b) = head.split_at_mut(cos.len());
    let sign = if inverse { -1.0 } else { 1.0 };
    for (((x1, x2), &c), &s) in a.iter_mut().zip(b.iter_mut()).zip(cos).zip(sin) {
        let s = sign * s;
        let (u, v) = (*x1, *x2);
        *x1 = u * c - v * s;
        *x2 = v * c + u * s;
    }
}
}

/// Heads first..first+count of sequence `bi` from a (n × width) row layout, head-major: `count`
/// blocks of (t × head_dim). A key/value head's query block is its `groups` query heads.
fn gather_heads(x: &[f32], width: usize, first: usize, count: usize, d: &Dims, bi: usize) -> Vec<f32> {
    let hd = d.head_dim;
    let mut out = Vec::with_capacity(count * d.t * hd);
    for head in first..first + count {
        for i in 0..d.t {
            out.extend_from_slice(&x[(bi * d.t + i) * width + head * hd..][..hd]);
        }
    }
    out
}

/// The inverse of `gather_heads`: writes the block back into the row layout.
fn scatter_heads(out: &mut [f32], block: &[f32], width: usize, first: usize, d: &Dims, bi: usize) {
    let hd = d.head_dim;
    for (j, rows) in block.chunks(d.t * hd).enumerate() {
        for (i, row) in rows.chunks(hd).enumerate() {
            out[(bi * d.t + i) * width + (first + j) * hd..][..hd].copy_from_slice(row);
        }
    }
}

/// The query rows that attend to key/value head `g`: its `groups` query heads.
fn query_heads(q: &[f32], d: &Dims, bi: usize, g: usize) -> Vec<f32> {
    gather_heads(q, d.q_width(), g * d.groups, d.groups, d, bi)
}

/// Causal grouped-query attention: the output (n × heads·head_dim) and each query row's
/// log-sum-exp, in blocks of (sequence, key/value head).
fn attention_forward(q: &[f32], k: &[f32], v: &[f32], d: &Dims, p: Precision) -> (Vec<f32>, Vec<f32>) {
    let rows = d.group_rows();
    let blocks: Vec<(Vec<f32>, Vec<f32>)> = (0..d.b * d.kv_heads)
        .into_par_iter()
        .map(|bg| {
            let (bi, g) = (bg / d.kv_heads, bg % d.kv_heads);
            let (qb, kb, vb) = (query_heads(q, d, bi, g), gather_heads(k, d.kv_width(), g, 1, d, bi), gather_heads(v, d.kv_width(), g, 1, d, bi));
            let mut probs = PackedWeight::pack(&kb, d.t, d.head_dim, p).matmul(&qb, rows);
            let lse: Vec<f32> = probs.par_chunks_mut(d.t).enumerate().map(|(r, row)| causal_softmax(row, r % d.t, d.scale)).collect();
            let out = PackedWeight::pack_transposed(&vb, d.t, d.head_dim, p).matmul(&probs, rows);
            (out, lse)
        })
        .collect();
    let mut o = vec![0f32; d.n() * d.q_width()];
    let mut lse = Vec::with_capacity(d.b * d.heads * d.t);
    for (bg, (out, l)) in blocks.into_iter().enumerate() {
        scatter_heads(&mut o, &out, d.q_width(), bg % d.kv_heads * d.groups, d, bg / d.kv_heads);
        lse.extend(l);
    }
    (o, lse)
}

/// The gradients of q, k and v (in their row layouts) given that of the attention output.
#[allow(clippy::too_many_arguments)]
fn attention_backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    o: &[f32],
    lse: &[f32],
    d_o: &[f32],
    d: &Dims,
    p: Precision,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let rows = d.group_rows();
    let hd = d.head_dim;
    let blocks: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = (0..d.b * d.kv_heads)
        .into_par_iter()
        .map(|bg| {
            let (bi, g) = (bg / d.kv_heads, bg % d.kv_heads);
            let (qb, kb, vb) = (query_heads(q, d, bi, g), gather_heads(k, d.kv_width(), g, 1, d, bi), gather_heads(v, d.kv_width(), g, 1, d, bi));
            let (ob, dob) = (query_heads(o, d, bi, g), query_heads(d_o, d, bi, g));
            let lse = &lse[bg * rows..][..rows];
            let mut probs = PackedWeight::pack(&kb, d.t, hd, p).matmul(&qb, rows);
            probs.par_chunks_mut(d.t).enumerate().for_each(|(r, row)| causal_probs(row, r % d.t, d.scale, lse[r]));
            // dS = P ∘ (dP - rowsum(dO ∘ O)) · scale, with dP = dO · Vᵀ; written over dP.
            let mut ds = PackedWeight::pack(&vb, d.t, hd, p).matmul(&dob, rows);
            ds.par_chunks_mut(d.t).zip(probs.par_chunks(d.t)).enumerate().for_each(|(r, (ds_row, p_row))| {
                let delta: f32 = dob[r * hd..][..hd].iter().zip(&ob[r * hd..][..hd]).map(|(a, b)| a * b).sum();
                score_grad(ds_row, p_row, delta, d.scale);
            });
            let dq = PackedWeight::pack_transposed(&kb, d.t, hd, p).matmul(&ds, rows);
            let dk = PackedWeight::pack_transposed(&qb, rows, hd, p).matmul(&transpose(&ds, rows, d.t), d.t);
            let dv = PackedWeight::pack_transposed(&dob, rows, hd, p).matmul(&transpose(&probs, rows, d.t), d.t);
            (dq, dk, dv)
        })
        .collect();
    let mut dq = vec![0f32; d.n() * d.q_width()];
    let (mut dk, mut dv) = (vec![0f32; d.n() * d.kv_width()], vec![0f32; d.n() * d.kv_width()]);
    for (bg, (bq, bk, bv)) in blocks.into_iter().enumerate() {
        let (bi, g) = (bg / d.kv_heads, bg % d.kv_heads);
        scatter_heads(&mut dq, &bq, d.q_width(), g * d.groups, d, bi);
        scatter_heads(&mut dk, &bk, d.kv_width(), g, d, bi);
        scatter_heads(&mut dv, &bv, d.kv_width(), g, d, bi);
    }
    (dq, dk, dv)
}

crate::multiversion! {
/// Softmax over the first `last + 1` scaled scores of a row (the rest become 0); returns the
/// log-sum-exp of the scaled scores.
fn causal_softmax(row: &mut [f32], last: usize, scale: f32) -> f32 {
    let (seen, future) = row.split_at_mut(last + 1);
    let max = seen.iter().fold(f32::NEG_INFINITY, |m, &s| if s * scale > m { s * scale } else { m });
    let mut sum = 0f32;
    for s in seen.iter_mut() {
        *s = crate::simd::exp_fast(*s * scale - max);
        sum += *s;
    }
    let inv = 1.0 / sum;
    seen.iter_mut().for_each(|s| *s *= inv);
    future.fill(0.0);
    max + sum.ln()
}
}

crate::multiversion! {
/// The probabilities `causal_softmax` gave, from the raw scores and the saved log-sum-exp.
fn causal_probs(row: &mut [f32], last: usize, scale: f32, lse: f32) {
    let (seen, future) = row.split_at_mut(last + 1);
    seen.iter_mut().for_each(|s| *s = crate::simd::exp_fast(*s * scale - lse));
    future.fill(0.0);
}
}

crate::multiversion! {
fn score_grad(ds: &mut [f32], probs: &[f32], delta: f32, scale: f32) {
    for (g, &pr) in ds.iter_mut().zip(probs) {
        *g = pr * (*g - delta) * scale;
    }
}
}

/// 1 / sqrt(mean(x²) + eps) of each row.
fn inv_rms(x: &[f32], width: usize, eps: f32) -> Vec<f32> {
    x.par_chunks(width).map(|row| 1.0 / (crate::simd::sum_squares(row) / width as f32 + eps).sqrt()).collect()
}

/// Each row times its inverse RMS, times the norm weight.
fn scale_rows(x: &[f32], r: &[f32], w: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(w.len()).zip(x.par_chunks(w.len())).zip(r).for_each(|((o, row), &ri)| scale_row(o, row, ri, w));
    out
}

crate::multiversion! {
fn scale_row(out: &mut [f32], x: &[f32], r: f32, w: &[f32]) {
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = xi * r * wi;
    }
}
}

/// The gradients of RMSNorm's input and weight for y = x · r · w, r = (mean(x²) + eps)^-½:
/// dx = r·g - x·r³·mean(g∘x) with g = dy∘w, and dw = Σ_rows dy∘x·r.
fn rms_backward(dy: &[f32], x: &[f32], r: &[f32], w: &[f32], width: usize) -> (Vec<f32>, Vec<f32>) {
    let mut dx = vec![0f32; x.len()];
    dx.par_chunks_mut(width)
        .zip(dy.par_chunks(width))
        .zip(x.par_chunks(width))
        .zip(r)
        .for_each(|(((dxr, dyr), xr), &ri)| rms_row_backward(dxr, dyr, xr, ri, w));
    let block = SUM_ROWS * width;
    let partials: Vec<Vec<f32>> = dy
        .par_chunks(block)
        .zip(x.par_chunks(block))
        .zip(r.par_chunks(SUM_ROWS))
        .map(|((dyb, xb), rb)| {
            let mut acc = vec![0f32; width];
            for ((dyr, xr), &ri) in dyb.chunks(width).zip(xb.chunks(width)).zip(rb) {
                accumulate_scaled_product(&mut acc, dyr, xr, ri);
            }
            acc
        })
        .collect();
    (dx, sum_in_order(partials, width))
}

crate::multiversion! {
fn rms_row_backward(dx: &mut [f32], dy: &[f32], x: &[f32], r: f32, w: &[f32]) {
    let dot: f32 = dy.iter().zip(w).zip(x).map(|((g, wi), xi)| g * wi * xi).sum();
    let c = r * r * r * dot / x.len() as f32;
    for (((o, &g), &wi), &xi) in dx.iter_mut().zip(dy).zip(w).zip(x) {
        *o = r * g * wi - xi * c;
    }
}
}

crate::multiversion! {
fn accumulate_scaled_product(acc: &mut [f32], a: &[f32], b: &[f32], s: f32) {
    for ((o, &x), &y) in acc.iter_mut().zip(a).zip(b) {
        *o += x * y * s;
    }
}
}

crate::multiversion! {
fn add_into(acc: &mut [f32], x: &[f32]) {
    for (a, &b) in acc.iter_mut().zip(x) {
        *a += b;
    }
}
}

/// Rows per partial sum of a reduction over rows. Sums run over fixed blocks, added in order,
/// so gradients are bit-identical from run to run (a resumed run repeats the uninterrupted
/// one's losses); rayon's fold would split by work stealing.
const SUM_ROWS: usize = 64;

fn sum_in_order(partials: Vec<Vec<f32>>, width: usize) -> Vec<f32> {
    partials.into_iter().fold(vec![0f32; width], |mut acc, p| {
        add_into(&mut acc, &p);
        acc
    })
}

fn column_sums(x: &[f32], width: usize) -> Vec<f32> {
    let partials = x
        .par_chunks(SUM_ROWS * width)
        .map(|block| {
            let mut acc = vec![0f32; width];
            block.chunks(width).for_each(|row| add_into(&mut acc, row));
            acc
        })
        .collect();
    sum_in_order(partials, width)
}

/// silu(gate) · up, elementwise.
fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; gate.len()];
    out.par_chunks_mut(4096)
        .zip(gate.par_chunks(4096))
        .zip(up.par_chunks(4096))
        .for_each(|((o, g), u)| crate::layer_math::gated_activation(g, u, false, o));
    out
}

/// The gradients of gate and up given that of silu(gate) · up.
fn swiglu_backward(dm: &[f32], gate: &[f32], up: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (mut dg, mut du) = (vec![0f32; gate.len()], vec![0f32; gate.len()]);
    dg.par_chunks_mut(4096)
        .zip(du.par_chunks_mut(4096))
        .zip(dm.par_chunks(4096))
        .zip(gate.par_chunks(4096))
        .zip(up.par_chunks(4096))
        .for_each(|((((dg, du), dm), g), u)| swiglu_chunk_backward(dg, du, dm, g, u));
    (dg, du)
}

crate::multiversion! {
fn swiglu_chunk_backward(dg: &mut [f32], du: &mut [f32], dm: &[f32], gate: &[f32], up: &[f32]) {
    for ((((dgi, dui), &m), &g), &u) in dg.iter_mut().zip(du.iter_mut()).zip(dm).zip(gate).zip(up) {
        let s = 1.0 / (1.0 + crate::simd::exp_fast(-g));
        *dui = m * g * s;
        *dgi = m * u * s * (1.0 + g * (1.0 - s));
    }
}
}
