//! Pooling layers over `[C, H, W]` planes: 2x2/stride-2 max-pool and global average pool
//! (`ops::pool`). Neither owns anything but its dispatches.

use super::{Io, Steps};
use crate::ops::pool;

/// x (B, C, H, W) -> y (B, C, H/2, W/2).
pub fn plan_max(io: &Io, steps: &mut Steps) {
    let [c, h, w] = io.image(0);
    let planes = (io.batch * c, h, w);
    steps.forward([pool::max_forward(io.gpu, io.name, planes, io.x(0), io.y)]);
    if let Some(dx) = &io.dx[0] {
        let name = io.backward_label();
        steps.backward.push(pool::max_backward(io.gpu, &name, planes, io.x(0), io.dy, dx.t, dx.accumulate));
    }
}

/// x (B, C, H, W) -> y (B, C, 1, 1).
pub fn plan_avg(io: &Io, steps: &mut Steps) {
    let [c, h, w] = io.image(0);
    let planes = (io.batch * c, h, w);
    steps.forward([pool::avg_forward(io.gpu, io.name, planes, io.x(0), io.y)]);
    if let Some(dx) = &io.dx[0] {
        let name = io.backward_label();
        steps.backward.push(pool::avg_backward(io.gpu, &name, planes, io.dy, dx.t, dx.accumulate));
    }
}
