//! The token plumbing of the transformers: image to patch rows (`Patchify`), the class
//! token and position embedding (`ClassToken`), the class token out again for the head
//! (`FirstToken`), and a language model's token-id embedding (`Embed`). Pure data movement
//! (`ops::tokens`); the patch embedding's arithmetic is the linear layer that follows
//! `Patchify`.

use super::{Io, Steps};
use crate::nn::graph::{self, ParamId};
use crate::ops::tokens;

/// image x (B, C, H, W) -> patches (B, P, C·p·p). Only the network input is patchified,
/// so there is no gradient to pass on.
pub fn plan_patchify(io: &Io, patch: usize, steps: &mut Steps) {
    let [c, h, w] = io.image(0);
    assert!(io.dx[0].is_none(), "{}: patchify reads the network input only", io.name);
    steps.forward([tokens::patchify(io.gpu, io.name, (io.batch, c, h, w), patch, io.x(0), io.y)]);
}

pub struct ClassToken {
    pub cls: ParamId,
    pub pos: ParamId,
}

/// patches x (B, P, D) -> tokens y (B, P+1, D).
pub fn plan_class_token(io: &Io, op: &graph::ClassToken, steps: &mut Steps) -> ClassToken {
    let (gpu, p) = (io.gpu, io.params);
    let [patches, dim] = io.x[0].1.tokens().expect("[P, D] patch embeddings");
    let dims = (io.batch, patches, dim);
    let (cls, pos) = (p.weight(op.cls), p.weight(op.pos));
    steps.forward([tokens::embed(gpu, io.name, dims, io.x(0), &cls, &pos, io.y)]);
    let (dcls, dpos) = (p.grad(op.cls), p.grad(op.pos));
    let dx = io.dx[0].as_ref().map(|d| (d.t, d.accumulate));
    steps.backward.extend(tokens::embed_backward(gpu, &io.backward_label(), dims, io.dy, dx, &dcls, &dpos));
    ClassToken { cls: op.cls, pos: op.pos }
}

/// tokens x (B, T, D) -> class tokens y (B, D).
pub fn plan_first_token(io: &Io, steps: &mut Steps) {
    let [t, d] = io.x[0].1.tokens().expect("[T, D] tokens");
    let dims = (io.batch, t, d);
    steps.forward([tokens::first_token(io.gpu, io.name, dims, io.x(0), io.y)]);
    if let Some(dx) = &io.dx[0] {
        let name = io.backward_label();
        steps.backward.push(tokens::first_token_backward(io.gpu, &name, dims, io.dy, dx.t, dx.accumulate));
    }
}

pub struct Embed {
    pub table: ParamId,
    pub pos: ParamId,
}

/// token ids x (B, T) u32 -> embeddings y (B, T, D) = table[id] + pos[t]. The ids are the
/// network input: no gradient flows past them. The table's gradient is added to when a tied
/// head wrote it first (`Io::accumulates`).
pub fn plan_embed(io: &Io, op: &graph::Embed, steps: &mut Steps) -> Embed {
    let (gpu, p) = (io.gpu, io.params);
    let [t] = <[usize; 1]>::try_from(io.x[0].1 .0.as_slice()).expect("[T] token ids");
    assert!(io.dx[0].is_none(), "{}: embeds the network input only", io.name);
    let dims = (io.batch, t, op.dim, op.vocab);
    let (table, pos) = (p.weight(op.table), p.weight(op.pos));
    steps.forward([tokens::lookup(gpu, io.name, dims, io.x(0), &table, &pos, io.y)]);
    let (dtable, dpos) = (p.grad(op.table), p.grad(op.pos));
    let acc = io.accumulates(op.table);
    assert!(!io.accumulates(op.pos), "{}: the position table is not shared", io.name);
    let name = io.backward_label();
    steps.backward.extend(tokens::lookup_backward(gpu, &name, dims, io.x(0), io.dy, &dtable, acc, &dpos));
    Embed { table: op.table, pos: op.pos }
}
