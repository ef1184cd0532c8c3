//! The shader list, the pipeline cache and recorded dispatches.
//!
//! Every WGSL file is registered once in `SHADERS`; `tests/shaders.rs` validates each with
//! naga and translates it to SPIR-V, MSL and HLSL. Pipelines are keyed by plain values
//! (shader, entry point, override constants) and built on first use. A `Dispatch` is a
//! pipeline with its bind group and grid, built once at plan time: recording a training
//! step only replays dispatches, so nothing is created in the step loop.

use super::{Gpu, Tensor};
use glam::UVec3;
use std::collections::HashMap;
use std::sync::Mutex;
use wgpu::util::DeviceExt;

/// A shader's name in `SHADERS`.
pub type ShaderId = &'static str;

/// Every WGSL source of the engine, by name.
pub const SHADERS: &[(ShaderId, &str)] = &[
    ("gemm", include_str!("../../shaders/gemm.wgsl")),
    ("batchnorm", include_str!("../../shaders/batchnorm.wgsl")),
    ("elementwise", include_str!("../../shaders/elementwise.wgsl")),
    ("pool", include_str!("../../shaders/pool.wgsl")),
    ("loss", include_str!("../../shaders/loss.wgsl")),
    ("sgd", include_str!("../../shaders/sgd.wgsl")),
    ("adamw", include_str!("../../shaders/adamw.wgsl")),
    ("clip", include_str!("../../shaders/clip.wgsl")),
    ("augment", include_str!("../../shaders/augment.wgsl")),
    ("srank", include_str!("../../shaders/srank.wgsl")),
    ("tokens", include_str!("../../shaders/tokens.wgsl")),
    ("layernorm", include_str!("../../shaders/layernorm.wgsl")),
    ("softmax", include_str!("../../shaders/softmax.wgsl")),
    ("attention", include_str!("../../shaders/attention.wgsl")),
];

type Key = (ShaderId, String, Vec<(String, u64)>);

#[derive(Default)]
pub(super) struct PipelineCache {
    modules: Mutex<HashMap<ShaderId, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<Key, wgpu::ComputePipeline>>,
}

impl PipelineCache {
    /// The pipeline for `entry` of `shader` specialised with `constants` (WGSL overrides).
    fn get(
        &self,
        device: &wgpu::Device,
        shader: ShaderId,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> wgpu::ComputePipeline {
        let key: Key =
            (shader, entry.to_string(), constants.iter().map(|(k, v)| (k.to_string(), v.to_bits())).collect());
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return p.clone();
        }
        let module = {
            let mut modules = self.modules.lock().unwrap();
            modules
                .entry(shader)
                .or_insert_with(|| {
                    let src = SHADERS
                        .iter()
                        .find(|(n, _)| *n == shader)
                        .unwrap_or_else(|| panic!("shader `{shader}` is not in SHADERS"))
                        .1;
                    device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(shader),
                        source: wgpu::ShaderSource::Wgsl(src.into()),
                    })
                })
                .clone()
        };
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&format!("{shader}::{entry}")),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                // Every kernel writes its workgroup memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        self.pipelines.lock().unwrap().insert(key, pipeline.clone());
        pipeline
    }
}

/// One compute dispatch, ready to record: pipeline, bind group, grid.
#[derive(Clone)]
pub struct Dispatch {
    pub label: String,
    /// What kind of kernel this is, for profiles: `shader.entry`, and for the GEMM core
    /// the operation its operand views make (`gemm.conv-forward`, `gemm.matmul`, ...).
    pub kind: String,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    /// Workgroups along x, y, z.
    pub groups: UVec3,
}

/// The largest grid dimension every WebGPU device accepts.
pub const MAX_GROUPS: u32 = 65535;

/// A grid covering `threads` invocations with workgroups of `wg` along x, folded into y
/// when x would pass the 65,535 limit. Kernels index with
/// `gid.x + gid.y * num_workgroups.x * WG`.
pub fn grid_1d(threads: usize, wg: u32) -> UVec3 {
    let groups = (threads as u64).div_ceil(wg as u64).max(1);
    if groups <= MAX_GROUPS as u64 {
        UVec3::new(groups as u32, 1, 1)
    } else {
        let y = groups.div_ceil(MAX_GROUPS as u64);
        UVec3::new(groups.div_ceil(y) as u32, y as u32, 1)
    }
}

impl Dispatch {
    /// Binding 0 is a uniform made from `params` (a `#[repr(C)]` Pod struct matching the
    /// WGSL `Params`); bindings 1.. are `tensors` in order, exactly those the entry uses.
    pub fn new<P: bytemuck::Pod>(
        gpu: &Gpu,
        label: &str,
        entry: (ShaderId, &str),
        constants: &[(&str, f64)],
        params: &P,
        tensors: &[&Tensor],
        groups: impl Into<UVec3>,
    ) -> Dispatch {
        let numbered: Vec<(u32, &Tensor)> = tensors.iter().enumerate().map(|(i, t)| (i as u32 + 1, *t)).collect();
        Self::with_bindings(gpu, label, entry, constants, params, &numbered, groups)
    }

    /// As `new`, for entry points that use only some of a shader's bindings: each tensor
    /// comes with its binding number (binding 0 is still the uniform).
    pub fn with_bindings<P: bytemuck::Pod>(
        gpu: &Gpu,
        label: &str,
        (shader, entry): (ShaderId, &str),
        constants: &[(&str, f64)],
        params: &P,
        tensors: &[(u32, &Tensor)],
        groups: impl Into<UVec3>,
    ) -> Dispatch {
        let groups = groups.into();
        assert!(groups.max_element() <= MAX_GROUPS, "grid {groups} of `{label}` too large");
        let pipeline = gpu.pipelines.get(&gpu.device, shader, entry, constants);
        let uniform = gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
        for (binding, t) in tensors {
            entries.push(wgpu::BindGroupEntry { binding: *binding, resource: t.binding() });
        }
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let kind = match (shader, constants.iter().find(|c| c.0 == "B_MODE").map(|c| c.1 as u32)) {
            ("gemm", Some(2)) => "gemm.conv-forward".to_string(),
            ("gemm", Some(3)) => "gemm.conv-data-grad".to_string(),
            ("gemm", Some(4)) => "gemm.conv-weight-grad".to_string(),
            ("gemm", _) => "gemm.matmul".to_string(),
            _ => format!("{shader}.{entry}"),
        };
        Dispatch { label: label.to_string(), kind, pipeline, bind_group, groups }
    }

    pub(super) fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        if self.groups.min_element() == 0 {
            return;
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups.x, self.groups.y, self.groups.z);
    }
}

/// Records dispatches in order into one compute pass of `encoder`.
pub(super) fn record_all<'a>(encoder: &mut wgpu::CommandEncoder, dispatches: impl IntoIterator<Item = &'a Dispatch>) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
    for d in dispatches {
        d.record(&mut pass);
    }
}
