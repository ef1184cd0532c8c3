//! Per-dispatch GPU times of one recorded step, for `cuttle bench train --profile`.
//!
//! With the adapter's timestamp queries each dispatch runs in its own compute pass between
//! two timestamps, all in one submit; without them each is submitted and waited for on
//! its own (coarse: it includes the submit). Allocates its query set and buffers per call:
//! a profile is a one-off outside the training loop.

use super::buffer::map_read;
use super::{Dispatch, Gpu, GpuError};

impl Gpu {
    /// Seconds per dispatch of `dispatches`, in order, and whether GPU timestamps
    /// measured them (else wall-clock time per submit).
    pub async fn profile(&self, dispatches: &[Dispatch]) -> Result<(Vec<f64>, bool), GpuError> {
        let n = dispatches.len();
        if !self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY)
            || 2 * n > wgpu::QUERY_SET_MAX_QUERIES as usize
        {
            let mut out = Vec::with_capacity(n);
            for d in dispatches {
                let t0 = web_time::Instant::now();
                self.submit(std::iter::once(d), None);
                self.finished().await;
                out.push(t0.elapsed().as_secs_f64());
            }
            return Ok((out, false));
        }
        let queries = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count: 2 * n as u32,
        });
        let bytes = 16 * n as u64;
        let buffer = |label, usage| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        let resolve = buffer("profile-resolve", wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
        let readback = buffer("profile-readback", wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        let mut enc = self.encoder("profile");
        for (i, d) in dispatches.iter().enumerate() {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&d.label),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &queries,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            d.record(&mut pass);
        }
        enc.resolve_query_set(&queries, 0..2 * n as u32, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &readback, 0, bytes);
        self.queue.submit([enc.finish()]);
        let ticks: Vec<u64> = map_read(self, &readback, bytemuck::pod_collect_to_vec).await?;
        let ns_per_tick = self.queue.get_timestamp_period() as f64;
        Ok((ticks.chunks_exact(2).map(|t| t[1].saturating_sub(t[0]) as f64 * ns_per_tick * 1e-9).collect(), true))
    }
}
