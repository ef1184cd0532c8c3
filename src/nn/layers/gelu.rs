//! GELU (exact erf form): y = x·Φ(x); backward dx = dy·GELU'(x) from the saved input.

use super::{Io, Steps};
use crate::ops::elementwise;

pub fn plan(io: &Io, steps: &mut Steps) {
    steps.forward([elementwise::gelu(io.gpu, io.name, io.x(0), io.y)]);
    if let Some(dx) = &io.dx[0] {
        let name = io.backward_label();
        steps.backward.push(elementwise::gelu_backward(io.gpu, &name, io.x(0), io.dy, dx.t, dx.accumulate));
    }
}
