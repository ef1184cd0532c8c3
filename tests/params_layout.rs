//! Every struct a shader binds (its `Params` uniform, the `Step` state, the elements of a
//! storage array of structs) has the size of the Rust struct the host writes into it:
//! naga lays out the WGSL struct (`naga::proc::Layouter`), and a bound struct with no
//! Rust counterpart listed here fails. No GPU needed.

use cuttle::cuttlefish::srank;
use cuttle::gpu::SHADERS;
use cuttle::ops::{
    adamw, attention, augment, batchnorm, clip, elementwise, gemm, layernorm, loss, pool, sgd, softmax, tokens,
    StepState,
};
use std::mem::size_of;

/// (shader, WGSL struct, Rust struct, its size).
const RUST: &[(&str, &str, &str, usize)] = &[
    ("gemm", "Params", "gemm::Params", size_of::<gemm::Params>()),
    ("batchnorm", "Params", "batchnorm::Params", size_of::<batchnorm::Params>()),
    ("elementwise", "Params", "elementwise::Params (gemm::EwParams)", size_of::<elementwise::Params>()),
    ("pool", "Params", "pool::Params", size_of::<pool::Params>()),
    ("loss", "Params", "loss::Params", size_of::<loss::Params>()),
    ("loss", "Step", "ops::StepState", size_of::<StepState>()),
    ("sgd", "Params", "sgd::Params", size_of::<sgd::Params>()),
    ("sgd", "Step", "ops::StepState", size_of::<StepState>()),
    ("adamw", "Params", "adamw::Params", size_of::<adamw::Params>()),
    ("adamw", "Step", "ops::StepState", size_of::<StepState>()),
    ("clip", "Params", "clip::Params", size_of::<clip::Params>()),
    ("augment", "Params", "augment::Params", size_of::<augment::Params>()),
    ("augment", "Step", "ops::StepState", size_of::<StepState>()),
    ("srank", "Params", "srank::Params", size_of::<srank::Params>()),
    ("srank", "Layer", "srank::LayerEntry", size_of::<srank::LayerEntry>()),
    ("tokens", "Params", "tokens::Params", size_of::<tokens::Params>()),
    ("tokens", "PermuteParams", "tokens::PermuteParams", size_of::<tokens::PermuteParams>()),
    ("tokens", "Step", "ops::StepState", size_of::<StepState>()),
    ("layernorm", "Params", "layernorm::Params", size_of::<layernorm::Params>()),
    ("softmax", "Params", "softmax::Params", size_of::<softmax::Params>()),
    ("attention", "Params", "attention::Params", size_of::<attention::Params>()),
];

#[test]
fn every_uniform_struct_matches_its_rust_struct() {
    let mut checked = 0;
    for &(shader, src) in SHADERS {
        let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{shader}.wgsl: {e}"));
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap_or_else(|e| panic!("{shader}.wgsl: layout: {e}"));
        let mut bound = Vec::new();
        for (_, var) in module.global_variables.iter() {
            if !matches!(var.space, naga::AddressSpace::Uniform | naga::AddressSpace::Storage { .. }) {
                continue;
            }
            let ty = match module.types[var.ty].inner {
                naga::TypeInner::Array { base, .. } => base,
                _ => var.ty,
            };
            if matches!(module.types[ty].inner, naga::TypeInner::Struct { .. }) && !bound.contains(&ty) {
                bound.push(ty);
            }
        }
        for ty in bound {
            let name = module.types[ty].name.as_deref().unwrap_or("?");
            let wgsl = layouter[ty].size as usize;
            let &(_, _, rust, size) = RUST.iter().find(|r| r.0 == shader && r.1 == name).unwrap_or_else(|| {
                panic!("{shader}.wgsl: bound struct `{name}` ({wgsl} bytes) has no Rust struct listed")
            });
            assert_eq!(size, wgsl, "{shader}.wgsl `{name}` is {wgsl} bytes, {rust} is {size}");
            assert_eq!(size % 16, 0, "{rust}: a whole number of 16-byte rows");
            checked += 1;
        }
    }
    assert_eq!(checked, RUST.len(), "every listed struct is bound by its shader");
}
