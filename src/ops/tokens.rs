//! Data movement for transformers (`shaders/tokens.wgsl`): axis permutes, image patches as
//! token rows, class token + position embedding, taking the class token, the token-id
//! lookup of a language model, and their backwards. No arithmetic beyond one add per
//! element, except the gradient sums over the batch and over equal ids, which loop in a
//! fixed order (deterministic, no float atomics).
//!
//! Shapes (all row-major, f32 unless said):
//! - `permute`: x with shape `dims`, y with shape `dims[perm[i]]`, up to 6 axes.
//! - `patchify`: x (B, C, H, W) -> y (B, P, C·p·p), P = (H/p)·(W/p).
//! - `embed`: x (B, P, D), cls (D,), pos (T, D) -> y (B, T, D), T = P + 1.
//! - `first_token`: x (B, T, D) -> y (B, D).
//! - `lookup`: ids (B·T,) u32, table (vocab, D), pos (T_max ≥ T, D) -> y (B, T, D).
//!
//! Builders check every tensor's length against its shape and panic naming the problem:
//! wrong shapes are programmer errors, caught when the plan is built, not in the step loop.

use super::ACCUMULATE;
use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};

/// Axes a permute handles (after dropping size-1 axes and merging, at most this many remain).
pub const MAX_AXES: usize = 6;

/// `PermuteParams` in tokens.wgsl: the permute's canonical shape, right-aligned in six slots.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PermuteParams {
    /// Output elements (vec4s for the vec4 kernel).
    pub len: u32,
    pub flags: u32,
    /// Output dims per slot, slot 5 innermost; unused leading slots 1.
    pub dims: [u32; MAX_AXES],
    /// Input stride of each output slot; unused slots 0.
    pub strides: [u32; MAX_AXES],
    pub _pad: [u32; 2],
}

/// `Params` in tokens.wgsl, shared by the other entry points (each reads its fields).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub len: u32,
    pub flags: u32,
    pub batch: u32,
    pub tokens: u32,
    pub rows: u32,
    pub start: u32,
    pub dim: u32,
    pub vocab: u32,
    pub channels: u32,
    pub height: u32,
    pub width: u32,
    pub patch_size: u32,
}

fn u32_of(n: usize, what: &str) -> u32 {
    u32::try_from(n).unwrap_or_else(|_| panic!("{what}: {n} does not fit the kernels' u32 indices"))
}

fn flags(accumulate: bool) -> u32 {
    if accumulate {
        ACCUMULATE
    } else {
        0
    }
}

fn check_len(label: &str, t: &Tensor, want: usize, shape: &str) {
    assert_eq!(t.len(), want, "`{label}`: tensor `{}` has {} elements, {shape} needs {want}", t.name, t.len());
}

fn check_at_least(label: &str, t: &Tensor, want: usize, shape: &str) {
    assert!(t.len() >= want, "`{label}`: tensor `{}` has {} elements, {shape} needs at least {want}", t.name, t.len());
}

/// Panics, naming the problem, unless `perm` is a permutation of `0..dims.len()` with 1 to
/// 6 axes. `permute` calls it first; public so plans can check a perm before building.
pub fn check_perm(label: &str, dims: &[usize], perm: &[usize]) {
    assert!(
        (1..=MAX_AXES).contains(&dims.len()),
        "`{label}`: permute of {} axes (dims {dims:?}); 1 to {MAX_AXES} are supported",
        dims.len()
    );
    assert_eq!(perm.len(), dims.len(), "`{label}`: perm {perm:?} has {} entries for dims {dims:?}", perm.len());
    let mut seen = [false; MAX_AXES];
    for &a in perm {
        assert!(a < dims.len(), "`{label}`: perm {perm:?} names axis {a}, dims {dims:?} has {}", dims.len());
        assert!(!seen[a], "`{label}`: perm {perm:?} names axis {a} twice: not a permutation");
        seen[a] = true;
    }
}

/// The inverse permutation: `permute(permute(x, perm), inverse(perm)) == x`, and the
/// backward of a permute by `perm` is the permute by `inverse(perm)` (of the output dims).
pub fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![usize::MAX; perm.len()];
    for (i, &a) in perm.iter().enumerate() {
        assert!(a < perm.len() && inv[a] == usize::MAX, "inverse: {perm:?} is not a permutation");
        inv[a] = i;
    }
    inv
}

/// The output dims and input strides of `x.permute(perm)` with size-1 axes dropped and
/// neighbouring output axes merged where they are contiguous in the input (outermost
/// first). A transpose of a (B, H, T, dh) tensor stays 4 axes; an identity permute is 1.
pub fn canonical(dims: &[usize], perm: &[usize]) -> Vec<(usize, usize)> {
    let mut in_stride = vec![1; dims.len()];
    for a in (0..dims.len().saturating_sub(1)).rev() {
        in_stride[a] = in_stride[a + 1] * dims[a + 1];
    }
    let mut axes: Vec<(usize, usize)> = Vec::new();
    for &a in perm {
        if dims[a] == 1 {
            continue;
        }
        match axes.last_mut() {
            // The previous output axis steps over exactly this one in the input: one axis.
            Some(last) if last.1 == in_stride[a] * dims[a] => *last = (last.0 * dims[a], in_stride[a]),
            _ => axes.push((dims[a], in_stride[a])),
        }
    }
    axes
}

/// y = x.permute(perm), or y += it with `accumulate`. x has shape `dims`, y has shape
/// `[dims[perm[0]], dims[perm[1]], ...]`, both contiguous row-major, up to 6 axes (numpy and
/// PyTorch semantics). The backward is `permute` by `inverse(perm)` over y's dims.
///
/// One invocation per output element (writes coalesced); when the innermost output axis
/// is contiguous in the input with a multiple of 4 elements (attention heads with
/// d_head % 4 == 0), one per vec4. Attention: qkv (B, T, 3, H, dh) -> (3, B, H, T, dh) is
/// perm [2, 0, 3, 1, 4]; merging heads (B, H, T, dh) -> (B, T, H, dh) is perm [0, 2, 1, 3].
/// x and y must not share memory.
pub fn permute(
    gpu: &Gpu,
    label: &str,
    dims: &[usize],
    perm: &[usize],
    x: &Tensor,
    y: &Tensor,
    accumulate: bool,
) -> Dispatch {
    check_perm(label, dims, perm);
    let len: usize = dims.iter().product();
    check_len(label, x, len, &format!("permute input dims {dims:?}"));
    check_len(label, y, len, &format!("permute output of dims {dims:?} by {perm:?}"));
    u32_of(len, label);
    let mut axes = canonical(dims, perm);
    // The vec4 kernel: the innermost axis is contiguous (stride 1) with a multiple of 4
    // elements; every other stride is then a multiple of that axis' length, so of 4.
    let vec4 = matches!(axes.last(), Some(&(d, 1)) if d % 4 == 0);
    if vec4 {
        for a in axes.iter_mut() {
            if a.1 == 1 {
                a.0 /= 4;
            } else {
                a.1 /= 4;
            }
        }
    }
    let mut p = PermuteParams {
        len: u32_of(if vec4 { len / 4 } else { len }, label),
        flags: flags(accumulate),
        dims: [1; MAX_AXES],
        ..Default::default()
    };
    let first = MAX_AXES - axes.len();
    for (k, &(d, s)) in axes.iter().enumerate() {
        p.dims[first + k] = u32_of(d, label);
        p.strides[first + k] = u32_of(s, label);
    }
    let entry = if vec4 { "permute4" } else { "permute" };
    Dispatch::new(gpu, label, ("tokens", entry), &[], &p, &[x, y], grid_1d(p.len as usize, 256))
}

/// The patch grid (rows, columns) of an H x W image cut into p x p patches; panics, naming
/// the problem, unless H and W are multiples of p. `patchify` calls it first.
pub fn patch_grid(label: &str, (h, w): (usize, usize), p: usize) -> (usize, usize) {
    assert!(p >= 1, "`{label}`: patch size 0");
    assert!(
        h % p == 0 && w % p == 0,
        "`{label}`: image {h}x{w} (H x W) is not a whole number of {p}x{p} patches: H and W must be multiples of p"
    );
    (h / p, w / p)
}

/// Non-overlapping p x p patches as token rows: x (B, C, H, W) -> y (B, P, C·p·p) with
/// P = (H/p)·(W/p) in row-major patch order, each row ordered (c, ky, kx): the flattening
/// of a Conv2d(C, D, p, stride p) weight (D, C, p, p), so a linear layer over these rows is
/// timm's patch embedding. H and W must be multiples of p. No backward: it reads the input.
pub fn patchify(
    gpu: &Gpu,
    label: &str,
    (batch, c, h, w): (usize, usize, usize, usize),
    p: usize,
    x: &Tensor,
    y: &Tensor,
) -> Dispatch {
    patch_grid(label, (h, w), p);
    let len = batch * c * h * w;
    check_len(label, x, len, &format!("images ({batch}, {c}, {h}, {w})"));
    check_len(label, y, len, &format!("patch rows ({batch}, {}, {})", (h / p) * (w / p), c * p * p));
    let params = Params {
        len: u32_of(len, label),
        batch: batch as u32,
        dim: (c * p * p) as u32,
        channels: c as u32,
        height: h as u32,
        width: w as u32,
        patch_size: p as u32,
        ..Default::default()
    };
    Dispatch::new(gpu, label, ("tokens", "patchify"), &[], &params, &[x, y], grid_1d(len, 256))
}

/// Class token and position embedding: y (B, T, D), T = P + 1, from x (B, P, D), cls (D,),
/// pos (T, D):  y[b, 0, :] = cls + pos[0, :];  y[b, 1 + i, :] = x[b, i, :] + pos[1 + i, :].
#[allow(clippy::too_many_arguments)]
pub fn embed(
    gpu: &Gpu,
    label: &str,
    (batch, patches, dim): (usize, usize, usize),
    x: &Tensor,
    cls: &Tensor,
    pos: &Tensor,
    y: &Tensor,
) -> Dispatch {
    let t = patches + 1;
    check_len(label, x, batch * patches * dim, &format!("patch embeddings ({batch}, {patches}, {dim})"));
    check_len(label, cls, dim, &format!("class token ({dim},)"));
    check_len(label, pos, t * dim, &format!("position embedding ({t}, {dim})"));
    check_len(label, y, batch * t * dim, &format!("tokens ({batch}, {t}, {dim})"));
    let len = batch * t * dim;
    let p = Params {
        len: u32_of(len, label),
        batch: batch as u32,
        tokens: t as u32,
        dim: dim as u32,
        ..Default::default()
    };
    Dispatch::new(gpu, label, ("tokens", "embed"), &[], &p, &[x, y, cls, pos], grid_1d(len, 256))
}

/// The backward of `embed`, from dy (B, T, D), T = P + 1:
/// dx (B, P, D) (+)= dy[:, 1.., :] (its flag accumulates), dcls (D,) = Σ_b dy[b, 0, :],
/// dpos (T, D) = Σ_b dy[b, :, :] (dcls and dpos overwritten; b summed in order 0, 1, ...,
/// one invocation per (t, d)). Without `dx` only the parameter gradients (one dispatch).
pub fn embed_backward(
    gpu: &Gpu,
    label: &str,
    (batch, patches, dim): (usize, usize, usize),
    dy: &Tensor,
    dx: Option<(&Tensor, bool)>,
    dcls: &Tensor,
    dpos: &Tensor,
) -> Vec<Dispatch> {
    let t = patches + 1;
    check_len(label, dy, batch * t * dim, &format!("token gradient ({batch}, {t}, {dim})"));
    check_len(label, dcls, dim, &format!("class token gradient ({dim},)"));
    check_len(label, dpos, t * dim, &format!("position embedding gradient ({t}, {dim})"));
    u32_of(batch * t * dim, label);
    let base = Params { batch: batch as u32, tokens: t as u32, dim: dim as u32, ..Default::default() };
    let sums = Params { len: (t * dim) as u32, ..base };
    let mut ds = vec![Dispatch::new(
        gpu,
        &format!("{label}.params"),
        ("tokens", "embed_backward_params"),
        &[],
        &sums,
        &[dy, dpos, dcls],
        grid_1d(t * dim, 256),
    )];
    if let Some((dx, accumulate)) = dx {
        check_len(label, dx, batch * patches * dim, &format!("patch embedding gradient ({batch}, {patches}, {dim})"));
        let len = batch * patches * dim;
        let p = Params { len: len as u32, flags: flags(accumulate), rows: patches as u32, start: 1, ..base };
        ds.push(Dispatch::new(
            gpu,
            &format!("{label}.dx"),
            ("tokens", "take_rows"),
            &[],
            &p,
            &[dy, dx],
            grid_1d(len, 256),
        ));
    }
    ds
}

/// The class token of each sample: y (B, D) = x[:, 0, :] of x (B, T, D).
pub fn first_token(
    gpu: &Gpu,
    label: &str,
    (batch, tokens, dim): (usize, usize, usize),
    x: &Tensor,
    y: &Tensor,
) -> Dispatch {
    check_len(label, x, batch * tokens * dim, &format!("tokens ({batch}, {tokens}, {dim})"));
    check_len(label, y, batch * dim, &format!("class tokens ({batch}, {dim})"));
    u32_of(batch * tokens * dim, label);
    let len = batch * dim;
    let p = Params {
        len: len as u32,
        batch: batch as u32,
        tokens: tokens as u32,
        rows: 1,
        start: 0,
        dim: dim as u32,
        ..Default::default()
    };
    Dispatch::new(gpu, label, ("tokens", "take_rows"), &[], &p, &[x, y], grid_1d(len, 256))
}

/// The backward of `first_token`: dy (B, D) -> dx (B, T, D): dx[:, 0, :] (+)= dy, and when
/// not accumulating dx[:, 1.., :] = 0 (accumulating leaves those rows alone and runs only
/// B·D invocations).
pub fn first_token_backward(
    gpu: &Gpu,
    label: &str,
    (batch, tokens, dim): (usize, usize, usize),
    dy: &Tensor,
    dx: &Tensor,
    accumulate: bool,
) -> Dispatch {
    check_len(label, dy, batch * dim, &format!("class token gradient ({batch}, {dim})"));
    check_len(label, dx, batch * tokens * dim, &format!("token gradient ({batch}, {tokens}, {dim})"));
    u32_of(batch * tokens * dim, label);
    let len = if accumulate { batch * dim } else { batch * tokens * dim };
    let p = Params {
        len: len as u32,
        flags: flags(accumulate),
        batch: batch as u32,
        tokens: tokens as u32,
        dim: dim as u32,
        ..Default::default()
    };
    Dispatch::new(gpu, label, ("tokens", "first_token_backward"), &[], &p, &[dy, dx], grid_1d(len, 256))
}

/// Token embedding lookup: y (B, T, D), y[b, t, :] = table[ids[b·T + t], :] + pos[t, :], from
/// ids (B·T,) u32, table (vocab, D), pos (T_max ≥ T, D). An id ≥ vocab reads row vocab - 1
/// (clamped, and `lookup_backward` sends its gradient there): the data loader validates ids,
/// the clamp only guarantees that a bad one cannot read out of bounds.
#[allow(clippy::too_many_arguments)]
pub fn lookup(
    gpu: &Gpu,
    label: &str,
    (batch, tokens, dim, vocab): (usize, usize, usize, usize),
    ids: &Tensor,
    table: &Tensor,
    pos: &Tensor,
    y: &Tensor,
) -> Dispatch {
    assert!(vocab >= 1, "`{label}`: empty vocabulary");
    check_len(label, ids, batch * tokens, &format!("token ids ({batch}·{tokens},)"));
    check_len(label, table, vocab * dim, &format!("embedding table ({vocab}, {dim})"));
    check_at_least(label, pos, tokens * dim, &format!("position embedding ({tokens}, {dim})"));
    check_len(label, y, batch * tokens * dim, &format!("tokens ({batch}, {tokens}, {dim})"));
    let len = batch * tokens * dim;
    let p = Params {
        len: u32_of(len, label),
        batch: batch as u32,
        tokens: tokens as u32,
        dim: dim as u32,
        vocab: u32_of(vocab, label),
        ..Default::default()
    };
    Dispatch::new(gpu, label, ("tokens", "lookup"), &[], &p, &[table, y, ids, pos], grid_1d(len, 256))
}

/// The backward of `lookup`, from dy (B, T, D): dtable (vocab, D) overwritten (or, with
/// `accumulate`, added to) with
/// dtable[v, :] = Σ of dy over the tokens whose (clamped) id is v, and rows 0..T of dpos
/// (T_max ≥ T, D) overwritten with Σ_b dy[b, t, :] (rows T.. untouched). Both sums in token
/// order. Cost: the table pass runs one invocation per (v, d), each scanning all B·T ids:
/// vocab·D·B·T compares (4e8 for vocab 65, D 384, B·T 16k), fine for vocab ≤ 256; a large
/// vocabulary wants a sort-based pass instead.
#[allow(clippy::too_many_arguments)]
pub fn lookup_backward(
    gpu: &Gpu,
    label: &str,
    (batch, tokens, dim, vocab): (usize, usize, usize, usize),
    ids: &Tensor,
    dy: &Tensor,
    dtable: &Tensor,
    accumulate: bool,
    dpos: &Tensor,
) -> Vec<Dispatch> {
    assert!(vocab >= 1, "`{label}`: empty vocabulary");
    check_len(label, ids, batch * tokens, &format!("token ids ({batch}·{tokens},)"));
    check_len(label, dy, batch * tokens * dim, &format!("token gradient ({batch}, {tokens}, {dim})"));
    check_len(label, dtable, vocab * dim, &format!("embedding table gradient ({vocab}, {dim})"));
    check_at_least(label, dpos, tokens * dim, &format!("position embedding gradient ({tokens}, {dim})"));
    u32_of(batch * tokens * dim, label);
    u32_of(vocab * dim, label);
    let base = Params {
        batch: batch as u32,
        tokens: tokens as u32,
        dim: dim as u32,
        vocab: vocab as u32,
        ..Default::default()
    };
    let table = Params { len: (vocab * dim) as u32, flags: flags(accumulate), ..base };
    let sums = Params { len: (tokens * dim) as u32, ..base };
    vec![
        Dispatch::new(
            gpu,
            &format!("{label}.table"),
            ("tokens", "lookup_backward_table"),
            &[],
            &table,
            &[dy, dtable, ids],
            grid_1d(vocab * dim, 256),
        ),
        Dispatch::new(
            gpu,
            &format!("{label}.pos"),
            ("tokens", "batch_sum"),
            &[],
            &sums,
            &[dy, dpos],
            grid_1d(tokens * dim, 256),
        ),
    ]
}

/// f64 references, written as plain loops over the definitions (no axis merging, no
/// shared code with the kernels' index math), so the GPU is held to something independent.
/// Backwards return overwritten gradients; callers add them for accumulation.
pub mod cpu {
    /// y = x.permute(perm): y[j] = x[Σ_i coord_i(j) · in_stride[perm[i]]].
    pub fn permute(dims: &[usize], perm: &[usize], x: &[f64]) -> Vec<f64> {
        let n = dims.len();
        assert_eq!(perm.len(), n);
        assert_eq!(x.len(), dims.iter().product::<usize>());
        let mut in_stride = vec![1usize; n];
        for a in (0..n.saturating_sub(1)).rev() {
            in_stride[a] = in_stride[a + 1] * dims[a + 1];
        }
        let out_dims: Vec<usize> = perm.iter().map(|&a| dims[a]).collect();
        let mut coord = vec![0usize; n];
        let mut y = Vec::with_capacity(x.len());
        for _ in 0..x.len() {
            y.push(x[(0..n).map(|i| coord[i] * in_stride[perm[i]]).sum::<usize>()]);
            // Odometer over the output coordinates, innermost fastest.
            for i in (0..n).rev() {
                coord[i] += 1;
                if coord[i] < out_dims[i] {
                    break;
                }
                coord[i] = 0;
            }
        }
        y
    }

    /// x (B, C, H, W) -> (B, P, C·p·p), rows ordered (c, ky, kx).
    pub fn patchify((b, c, h, w): (usize, usize, usize, usize), p: usize, x: &[f64]) -> Vec<f64> {
        let mut y = Vec::with_capacity(x.len());
        for n in 0..b {
            for py in 0..h / p {
                for px in 0..w / p {
                    for ch in 0..c {
                        for ky in 0..p {
                            for kx in 0..p {
                                y.push(x[((n * c + ch) * h + py * p + ky) * w + px * p + kx]);
                            }
                        }
                    }
                }
            }
        }
        y
    }

    /// y (B, P + 1, D) from x (B, P, D), cls (D,), pos (P + 1, D).
    pub fn embed((b, np, d): (usize, usize, usize), x: &[f64], cls: &[f64], pos: &[f64]) -> Vec<f64> {
        let mut y = Vec::with_capacity(b * (np + 1) * d);
        for n in 0..b {
            y.extend((0..d).map(|k| cls[k] + pos[k]));
            for i in 0..np {
                y.extend((0..d).map(|k| x[(n * np + i) * d + k] + pos[(1 + i) * d + k]));
            }
        }
        y
    }

    /// (dx (B, P, D), dcls (D,), dpos (P + 1, D)) from dy (B, P + 1, D).
    pub fn embed_backward((b, np, d): (usize, usize, usize), dy: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let t = np + 1;
        let mut dx = Vec::with_capacity(b * np * d);
        let mut dpos = vec![0.0; t * d];
        for n in 0..b {
            dx.extend_from_slice(&dy[(n * t + 1) * d..(n + 1) * t * d]);
            for (k, g) in dpos.iter_mut().enumerate() {
                *g += dy[n * t * d + k];
            }
        }
        let dcls = dpos[..d].to_vec();
        (dx, dcls, dpos)
    }

    /// y (B, D) = x[:, 0, :] of x (B, T, D).
    pub fn first_token((b, t, d): (usize, usize, usize), x: &[f64]) -> Vec<f64> {
        (0..b).flat_map(|n| x[n * t * d..n * t * d + d].to_vec()).collect()
    }

    /// dx (B, T, D) from dy (B, D): row 0 of each sample, the rest 0.
    pub fn first_token_backward((b, t, d): (usize, usize, usize), dy: &[f64]) -> Vec<f64> {
        let mut dx = vec![0.0; b * t * d];
        for n in 0..b {
            dx[n * t * d..n * t * d + d].copy_from_slice(&dy[n * d..(n + 1) * d]);
        }
        dx
    }

    /// y (B, T, D) from ids (B·T,), table (vocab, D), pos (≥ T, D); ids clamped to vocab - 1.
    pub fn lookup((b, t, d, vocab): (usize, usize, usize, usize), ids: &[u32], table: &[f64], pos: &[f64]) -> Vec<f64> {
        let mut y = Vec::with_capacity(b * t * d);
        for (n, &id) in ids.iter().enumerate().take(b * t) {
            let row = (id as usize).min(vocab - 1);
            y.extend((0..d).map(|k| table[row * d + k] + pos[(n % t) * d + k]));
        }
        y
    }

    /// (dtable (vocab, D), dpos (T, D)) from dy (B, T, D), in token order.
    pub fn lookup_backward(
        (b, t, d, vocab): (usize, usize, usize, usize),
        ids: &[u32],
        dy: &[f64],
    ) -> (Vec<f64>, Vec<f64>) {
        let mut dtable = vec![0.0; vocab * d];
        let mut dpos = vec![0.0; t * d];
        for (n, &id) in ids.iter().enumerate().take(b * t) {
            let row = (id as usize).min(vocab - 1);
            for k in 0..d {
                dtable[row * d + k] += dy[n * d + k];
                dpos[(n % t) * d + k] += dy[n * d + k];
            }
        }
        (dtable, dpos)
    }
}

/// A language model's batch of `batch` windows of `tokens` ids from `stream` (n,) u32 into
/// `ids` (batch·tokens,) and their next tokens into `labels` (batch·tokens,): random
/// windows from (seed, epoch, step) of `step` (the StepState) with `eval_stride` None,
/// else window w = step·batch + b at w·stride (`data::text::eval_stride`). Needs
/// n > tokens.
#[allow(clippy::too_many_arguments)]
pub fn text_windows(
    gpu: &Gpu,
    label: &str,
    (batch, tokens): (usize, usize),
    eval_stride: Option<usize>,
    stream: &Tensor,
    step: &Tensor,
    ids: &Tensor,
    labels: &Tensor,
) -> Dispatch {
    assert!(stream.len() > tokens, "`{label}`: a stream of {} tokens has no window of {tokens}", stream.len());
    check_len(label, ids, batch * tokens, &format!("token ids ({batch}·{tokens},)"));
    check_len(label, labels, batch * tokens, &format!("targets ({batch}·{tokens},)"));
    let len = batch * tokens;
    let p = Params {
        len: u32_of(len, label),
        batch: batch as u32,
        tokens: tokens as u32,
        rows: u32_of(stream.len() - tokens, label),
        start: eval_stride.map_or(0, |s| u32_of(s.max(1), label)),
        ..Default::default()
    };
    let bindings = [(1, stream), (2, ids), (5, labels), (6, step)];
    Dispatch::with_bindings(gpu, label, ("tokens", "text_windows"), &[], &p, &bindings, grid_1d(len, 256))
}
