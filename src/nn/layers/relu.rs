//! A standalone ReLU (one that the planner did not fuse into a BatchNorm): y = max(x, 0),
//! backward dx = dy·[y > 0] from the saved output.

use super::{Io, Steps};
use crate::ops::elementwise;

pub fn plan(io: &Io, steps: &mut Steps) {
    steps.forward([elementwise::relu(io.gpu, io.name, io.x(0), io.y)]);
    if let Some(dx) = &io.dx[0] {
        let name = io.backward_label();
        steps.backward.push(elementwise::relu_backward(io.gpu, &name, io.y, io.dy, dx.t, dx.accumulate));
    }
}
