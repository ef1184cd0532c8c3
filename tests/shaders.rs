//! Every WGSL file parses and validates with naga, and every entry point, under every
//! override setting the engine uses, translates with naga's SPIR-V, MSL and HLSL back
//! ends: the shaders are portable to Vulkan, Metal and DX12 without those GPUs here.

use cuttle::gpu::SHADERS;
use cuttle::ops::gemm::{Tile, VIEWS_IN_USE};
use naga::back::{hlsl, msl, spv, PipelineConstants};
use naga::valid::{Capabilities, ValidationFlags, Validator};

/// The override settings the engine builds pipelines with: for gemm, every operand view
/// combination in use (`gemm::VIEWS_IN_USE`, the list ops::gemm builds from) under every
/// tile; the other shaders have no overrides without a default.
fn override_sets(shader: &str) -> Vec<Vec<(&'static str, f64)>> {
    if shader == "gemm" {
        let mut v = Vec::new();
        for views in VIEWS_IN_USE {
            for t in Tile::ALL {
                let mut set = views.constants().to_vec();
                set.extend([
                    ("WG_M", t.wg_m as f64),
                    ("WG_N", t.wg_n as f64),
                    ("BK", t.bk as f64),
                    ("TM", t.tm as f64),
                    ("STAGES", t.stages as f64),
                ]);
                v.push(set);
            }
        }
        v
    } else {
        vec![vec![]]
    }
}

#[test]
fn every_shader_validates_and_translates() {
    let mut checked = 0;
    for &(name, src) in SHADERS {
        let module =
            naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(src)));
        let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(src)));
        assert!(!module.entry_points.is_empty(), "{name}.wgsl has no entry point");
        for ep in &module.entry_points {
            for set in override_sets(name) {
                // gemm's entry points each serve their own tiles (`Tile::entry`).
                let tm = set.iter().find(|c| c.0 == "TM").map(|c| c.1 as u32);
                if let Some(tm) = tm {
                    if (Tile { wg_m: 1, wg_n: 1, bk: 1, tm, stages: 1 }).entry() != ep.name {
                        continue;
                    }
                }
                let mut consts = PipelineConstants::default();
                for (k, v) in &set {
                    consts.insert(k.to_string(), *v);
                }
                let what = format!("{name}.wgsl::{} {set:?}", ep.name);
                let (m, i) = naga::back::pipeline_constants::process_overrides(
                    &module,
                    &info,
                    Some((ep.stage, &ep.name)),
                    &consts,
                )
                .unwrap_or_else(|e| panic!("{what}: overrides: {e}"));
                let spv_opts = spv::PipelineOptions { shader_stage: ep.stage, entry_point: ep.name.clone() };
                spv::write_vec(&m, &i, &spv::Options::default(), Some(&spv_opts))
                    .unwrap_or_else(|e| panic!("{what}: SPIR-V: {e}"));
                let msl_opts =
                    msl::PipelineOptions { entry_point: Some((ep.stage, ep.name.clone())), ..Default::default() };
                msl::write_string(&m, &i, &msl::Options::default(), &msl_opts)
                    .unwrap_or_else(|e| panic!("{what}: MSL: {e}"));
                let hlsl_opts = hlsl::PipelineOptions { entry_point: Some((ep.stage, ep.name.clone())) };
                let mut out = String::new();
                hlsl::Writer::new(&mut out, &hlsl::Options::default(), &hlsl_opts)
                    .write(&m, &i, None)
                    .unwrap_or_else(|e| panic!("{what}: HLSL: {e}"));
                checked += 1;
            }
        }
    }
    eprintln!("{checked} entry-point translations checked");
    assert!(checked > 40);
}

/// The WGSL that naga writes back (what wgpu hands a browser after processing override
/// constants) holds only numbers an f32 can represent: Tint rejects a shader with one it
/// reads as out of range. f32's lowest, `-3.40282347e38`, comes back as
/// -340282350000000000000000000000000000000f here and as
/// -340282346999999984391321947108527833088.0 in the browser build, both beyond f32::MAX,
/// and chromium rejected the attention shader.
#[test]
fn written_back_wgsl_has_only_f32_literals() {
    for &(name, src) in SHADERS {
        let module = naga::front::wgsl::parse_str(src).unwrap();
        let info = Validator::new(ValidationFlags::all(), Capabilities::all()).validate(&module).unwrap();
        let constants: PipelineConstants = override_sets(name)[0].iter().map(|&(k, v)| (k.to_string(), v)).collect();
        let (module, info) = naga::back::pipeline_constants::process_overrides(&module, &info, None, &constants)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = naga::back::wgsl::write_string(&module, &info, naga::back::wgsl::WriterFlags::empty()).unwrap();
        let bytes = out.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let starts = bytes[i].is_ascii_digit()
                && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
            if !starts {
                i += 1;
                continue;
            }
            let j = (i..bytes.len())
                .find(|&j| {
                    !(bytes[j].is_ascii_digit() || matches!(bytes[j], b'.' | b'e' | b'E' | b'+' | b'-'))
                        || (matches!(bytes[j], b'+' | b'-') && !matches!(bytes[j - 1], b'e' | b'E'))
                })
                .unwrap_or(bytes.len());
            // Every number (naga writes f32 values as `123.0`, `1e-5` or `3400..0f`).
            let lit = &out[i..j];
            let v: f64 = lit.parse().unwrap_or_else(|_| panic!("{name}: literal {lit:?}"));
            assert!(v.abs() <= f32::MAX as f64, "{name}.wgsl: naga writes the literal {lit}, beyond f32's range");
            i = j;
        }
    }
}
