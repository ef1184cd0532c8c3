//! A standalone sum of two activations (one that the planner did not fuse into a
//! BatchNorm): y = a + b; backward passes dy to both inputs.

use super::{Io, Steps};
use crate::ops::elementwise;

pub fn plan(io: &Io, steps: &mut Steps) {
    steps.forward([elementwise::add_two(io.gpu, io.name, io.x(0), io.x(1), io.y)]);
    let name = io.backward_label();
    for dx in io.dx.iter().flatten() {
        steps.backward.push(elementwise::add(io.gpu, &name, io.dy, dx.t, dx.accumulate));
    }
}
