//! HF Llama export: names, `[out, in]` shapes, and a from-scratch Llama forward over the
//! exported files (HF semantics: `x·Wᵀ + b`, `rotate_half` rotary) that must reproduce the
//! decoder's logits.

mod common;

use std::collections::HashMap;
use std::path::Path;

use cascade_model::{DecoderConfig, HfSpecialTokens, ModelError, NormKind, export_hf_llama};
use common::{device, to_vec, tokens};

type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

fn read_safetensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out = HashMap::new();
    for (name, info) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        assert_eq!(info["dtype"], "F32");
        let shape: Vec<usize> = serde_json::from_value(info["shape"].clone()).unwrap();
        let [start, end]: [usize; 2] = serde_json::from_value(info["data_offsets"].clone()).unwrap();
        let values = data[start..end].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        out.insert(name.clone(), (shape, values));
    }
    out
}

/// `y = x·Wᵀ (+ b)` with `W: [out, in]` as HF stores it.
fn linear(t: &Tensors, name: &str, x: &[f32]) -> Vec<f32> {
    let (shape, w) = &t[&format!("{name}.weight")];
    let (n_out, n_in) = (shape[0], shape[1]);
    assert_eq!(x.len(), n_in, "{name}");
    let bias = t.get(&format!("{name}.bias")).map(|(_, b)| b.clone()).unwrap_or(vec![0.0; n_out]);
    (0..n_out).map(|o| bias[o] + (0..n_in).map(|i| w[o * n_in + i] * x[i]).sum::<f32>()).collect()
}

fn rms_norm(t: &Tensors, name: &str, x: &[f32], eps: f32) -> Vec<f32> {
    let w = &t[&format!("{name}.weight")].1;
    let scale = 1.0 / (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32 + eps).sqrt();
    x.iter().zip(w).map(|(v, g)| v * scale * g).collect()
}

/// HF `apply_rotary_pos_emb` on one head vector at `pos`.
fn rotate_half(x: &mut [f32], pos: usize, theta: f64) {
    let half = x.len() / 2;
    for j in 0..half {
        let angle = pos as f64 / theta.powf(2.0 * j as f64 / x.len() as f64);
        let (sin, cos) = (angle.sin() as f32, angle.cos() as f32);
        let (a, b) = (x[j], x[j + half]);
        x[j] = a * cos - b * sin;
        x[j + half] = b * cos + a * sin;
    }
}

fn llama_logits(dir: &Path, ids: &[usize]) -> Vec<Vec<f32>> {
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let t = read_safetensors(&dir.join("model.safetensors"));
    let n_layers = cfg["num_hidden_layers"].as_u64().unwrap() as usize;
    let n_heads = cfg["num_attention_heads"].as_u64().unwrap() as usize;
    let n_kv = cfg["num_key_value_heads"].as_u64().unwrap() as usize;
    let dh = cfg["head_dim"].as_u64().unwrap() as usize;
    let eps = cfg["rms_norm_eps"].as_f64().unwrap() as f32;
    let theta = cfg["rope_theta"].as_f64().unwrap();
    let (emb_shape, emb) = &t["model.embed_tokens.weight"];
    let d = emb_shape[1];
    let mut xs: Vec<Vec<f32>> = ids.iter().map(|&id| emb[id * d..(id + 1) * d].to_vec()).collect();
    for l in 0..n_layers {
        let p = format!("model.layers.{l}");
        let (mut qs, mut ks, mut vs) = (Vec::new(), Vec::new(), Vec::new());
        for (pos, x) in xs.iter().enumerate() {
            let h = rms_norm(&t, &format!("{p}.input_layernorm"), x, eps);
            let mut q = linear(&t, &format!("{p}.self_attn.q_proj"), &h);
            let mut k = linear(&t, &format!("{p}.self_attn.k_proj"), &h);
            q.chunks_mut(dh).for_each(|head| rotate_half(head, pos, theta));
            k.chunks_mut(dh).for_each(|head| rotate_half(head, pos, theta));
            qs.push(q);
            ks.push(k);
            vs.push(linear(&t, &format!("{p}.self_attn.v_proj"), &h));
        }
        for pos in 0..xs.len() {
            let mut attn = vec![0.0f32; n_heads * dh];
            for head in 0..n_heads {
                let kv = head / (n_heads / n_kv);
                let q = &qs[pos][head * dh..(head + 1) * dh];
                let scores: Vec<f32> = (0..=pos)
                    .map(|s| q.iter().zip(&ks[s][kv * dh..(kv + 1) * dh]).map(|(a, b)| a * b).sum::<f32>() / (dh as f32).sqrt())
                    .collect();
                let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f32 = exps.iter().sum();
                for (s, e) in exps.iter().enumerate() {
                    for j in 0..dh {
                        attn[head * dh + j] += e / total * vs[s][kv * dh + j];
                    }
                }
            }
            let o = linear(&t, &format!("{p}.self_attn.o_proj"), &attn);
            xs[pos].iter_mut().zip(o).for_each(|(x, y)| *x += y);
            let h = rms_norm(&t, &format!("{p}.post_attention_layernorm"), &xs[pos], eps);
            let g = linear(&t, &format!("{p}.mlp.gate_proj"), &h);
            let u = linear(&t, &format!("{p}.mlp.up_proj"), &h);
            let a: Vec<f32> = g.iter().zip(&u).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            let down = linear(&t, &format!("{p}.mlp.down_proj"), &a);
            xs[pos].iter_mut().zip(down).for_each(|(x, y)| *x += y);
        }
    }
    xs.iter()
        .map(|x| {
            let h = rms_norm(&t, "model.norm", x, eps);
            if t.contains_key("lm_head.weight") {
                linear(&t, "lm_head", &h)
            } else {
                assert_eq!(cfg["tie_word_embeddings"], true);
                emb.chunks(d).map(|row| row.iter().zip(&h).map(|(a, b)| a * b).sum()).collect()
            }
        })
        .collect()
}

#[test]
fn export_has_hf_names_shapes_and_reproduces_logits() {
    let dev = device();
    for config in [
        DecoderConfig { vocab_size: 50, d_model: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, d_ff: 40, max_seq_len: 16, rope_theta: 500.0, ..DecoderConfig::default() },
        DecoderConfig { vocab_size: 50, d_model: 32, n_layers: 1, n_heads: 2, d_ff: 24, max_seq_len: 16, bias: true, tie_embeddings: false, init_std: 0.2, ..DecoderConfig::default() },
    ] {
        let model = config.init(&dev).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = dir.path().join("src-tokenizer.json");
        std::fs::write(&tokenizer, "{}").unwrap();
        let special = HfSpecialTokens { bos_token_id: None, eos_token_id: Some(1), pad_token_id: None };
        let out = dir.path().join("hf");
        let export = export_hf_llama(&model, &special, Some(&tokenizer), &out).unwrap();
        assert!(out.join("tokenizer.json").is_file() && export.config_path.is_file());

        let t = read_safetensors(&export.weights_path);
        let d = config.d_model;
        let kv = config.kv_heads() * (d / config.n_heads);
        assert_eq!(t["model.embed_tokens.weight"].0, vec![50, d]);
        assert_eq!(t["model.layers.0.self_attn.q_proj.weight"].0, vec![d, d]);
        assert_eq!(t["model.layers.0.self_attn.k_proj.weight"].0, vec![kv, d]);
        assert_eq!(t["model.layers.0.mlp.gate_proj.weight"].0, vec![config.d_ff, d]);
        assert_eq!(t["model.layers.0.mlp.down_proj.weight"].0, vec![d, config.d_ff]);
        assert_eq!(t["model.layers.0.input_layernorm.weight"].0, vec![d]);
        assert_eq!(t.contains_key("lm_head.weight"), !config.tie_embeddings);
        assert_eq!(t.contains_key("model.layers.0.self_attn.q_proj.bias"), config.bias);
        assert_eq!(export.tensor_names.len(), t.len());

        let ids = [3usize, 17, 42, 8, 0, 49, 25];
        let ours = to_vec(model.forward(tokens(&[&ids.map(|i| i as i64)], &dev)));
        let reference: Vec<f32> = llama_logits(&out, &ids).concat();
        let diff = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff < 1e-4, "HF-semantics logits differ by {diff}");
    }
}

#[test]
fn non_llama_configs_are_refused_naming_the_key() {
    let dev = device();
    let model = DecoderConfig { vocab_size: 20, d_model: 16, n_layers: 1, n_heads: 2, max_seq_len: 8, norm: NormKind::Layer, ..DecoderConfig::default() }
        .init(&dev)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    match export_hf_llama(&model, &HfSpecialTokens::default(), None, dir.path()) {
        Err(ModelError::UnsupportedExport { key, .. }) => assert_eq!(key, "norm"),
        other => panic!("expected refusal, got {other:?}"),
    }
}
