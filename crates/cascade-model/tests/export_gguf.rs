//! GGUF export: the file parses back (header, metadata, tensor infos, aligned offsets, shapes),
//! and a from-scratch forward with llama.cpp's semantics over the parsed tensors (`x·Wᵀ` with
//! `ne = [in, out]`, rotary on interleaved pairs) reproduces the decoder's logits, which checks
//! the query/key permutation without llama.cpp.

mod common;

use std::collections::HashMap;

use cascade_model::{
    DecoderConfig, GgufDtype, GgufOptions, GgufTokenType, GgufTokenizer, MlpKind, ModelError, export_gguf_llama,
};
use common::{device, to_vec, tokens};

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(i64),
    F32(f32),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

struct TensorInfo {
    ne: Vec<usize>,
    dtype: u32,
    offset: usize,
}

struct Gguf {
    version: u32,
    kv: HashMap<String, Value>,
    tensors: HashMap<String, TensorInfo>,
    tensor_order: Vec<String>,
    data_start: usize,
    bytes: Vec<u8>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        out
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let n = self.u64() as usize;
        String::from_utf8(self.take(n).to_vec()).unwrap()
    }
    fn value(&mut self, kind: u32) -> Value {
        match kind {
            4 => Value::Int(i64::from(self.u32())),
            5 => Value::Int(i64::from(self.u32() as i32)),
            6 => Value::F32(f32::from_le_bytes(self.take(4).try_into().unwrap())),
            7 => Value::Bool(self.take(1)[0] != 0),
            8 => Value::Str(self.string()),
            9 => {
                let inner = self.u32();
                let n = self.u64() as usize;
                Value::Array((0..n).map(|_| self.value(inner)).collect())
            }
            other => panic!("unexpected GGUF value type {other}"),
        }
    }
}

fn parse(bytes: Vec<u8>) -> Gguf {
    let mut c = Cursor { bytes: &bytes, at: 0 };
    assert_eq!(c.take(4), b"GGUF");
    let version = c.u32();
    let (n_tensors, n_kv) = (c.u64(), c.u64());
    let mut kv = HashMap::new();
    for _ in 0..n_kv {
        let key = c.string();
        let kind = c.u32();
        assert!(kv.insert(key.clone(), c.value(kind)).is_none(), "duplicate key {key}");
    }
    let (mut tensors, mut tensor_order) = (HashMap::new(), Vec::new());
    for _ in 0..n_tensors {
        let name = c.string();
        let n_dims = c.u32() as usize;
        let ne = (0..n_dims).map(|_| c.u64() as usize).collect();
        let (dtype, offset) = (c.u32(), c.u64() as usize);
        tensor_order.push(name.clone());
        tensors.insert(name, TensorInfo { ne, dtype, offset });
    }
    let alignment = match kv.get("general.alignment") {
        Some(Value::Int(a)) => *a as usize,
        other => panic!("general.alignment: {other:?}"),
    };
    let data_start = c.at.next_multiple_of(alignment);
    Gguf { version, kv, tensors, tensor_order, data_start, bytes }
}

impl Gguf {
    fn int(&self, key: &str) -> usize {
        match &self.kv[key] {
            Value::Int(v) => *v as usize,
            other => panic!("{key}: {other:?}"),
        }
    }
    fn f32(&self, key: &str) -> f32 {
        match &self.kv[key] {
            Value::F32(v) => *v,
            other => panic!("{key}: {other:?}"),
        }
    }
    /// The tensor as row-major values with its `ne` (innermost first).
    fn tensor(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let info = &self.tensors[name];
        let n: usize = info.ne.iter().product();
        let start = self.data_start + info.offset;
        let values = match info.dtype {
            0 => self.bytes[start..start + 4 * n].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            1 => self.bytes[start..start + 2 * n]
                .chunks_exact(2)
                .map(|c| burn::tensor::f16::from_le_bytes(c.try_into().unwrap()).to_f32())
                .collect(),
            other => panic!("{name}: ggml type {other}"),
        };
        (info.ne.clone(), values)
    }
    /// `y = W·x` for a GGUF matrix with `ne = [in, out]` (row-major `[out, in]`).
    fn matvec(&self, name: &str, x: &[f32]) -> Vec<f32> {
        let (ne, w) = self.tensor(name);
        assert_eq!(ne[0], x.len(), "{name}");
        w.chunks(ne[0]).map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
    }
    fn rms_norm(&self, name: &str, x: &[f32]) -> Vec<f32> {
        let eps = self.f32("llama.attention.layer_norm_rms_epsilon");
        let w = self.tensor(name).1;
        let scale = 1.0 / (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32 + eps).sqrt();
        x.iter().zip(w).map(|(v, g)| v * scale * g).collect()
    }
}

/// llama.cpp's "normal" rope: pairs `(x[2j], x[2j+1])` rotate by `pos · base^(-2j/d)`.
fn rope_interleaved(x: &mut [f32], pos: usize, base: f64) {
    for j in 0..x.len() / 2 {
        let angle = pos as f64 / base.powf(2.0 * j as f64 / x.len() as f64);
        let (sin, cos) = (angle.sin() as f32, angle.cos() as f32);
        let (a, b) = (x[2 * j], x[2 * j + 1]);
        x[2 * j] = a * cos - b * sin;
        x[2 * j + 1] = b * cos + a * sin;
    }
}

fn llama_cpp_logits(g: &Gguf, ids: &[usize]) -> Vec<f32> {
    let n_layers = g.int("llama.block_count");
    let n_heads = g.int("llama.attention.head_count");
    let n_kv = g.int("llama.attention.head_count_kv");
    let dh = g.int("llama.rope.dimension_count");
    let base = f64::from(g.f32("llama.rope.freq_base"));
    let (emb_ne, emb) = g.tensor("token_embd.weight");
    let d = emb_ne[0];
    let mut xs: Vec<Vec<f32>> = ids.iter().map(|&id| emb[id * d..(id + 1) * d].to_vec()).collect();
    for l in 0..n_layers {
        let (mut qs, mut ks, mut vs) = (Vec::new(), Vec::new(), Vec::new());
        for (pos, x) in xs.iter().enumerate() {
            let h = g.rms_norm(&format!("blk.{l}.attn_norm.weight"), x);
            let mut q = g.matvec(&format!("blk.{l}.attn_q.weight"), &h);
            let mut k = g.matvec(&format!("blk.{l}.attn_k.weight"), &h);
            q.chunks_mut(dh).for_each(|head| rope_interleaved(head, pos, base));
            k.chunks_mut(dh).for_each(|head| rope_interleaved(head, pos, base));
            qs.push(q);
            ks.push(k);
            vs.push(g.matvec(&format!("blk.{l}.attn_v.weight"), &h));
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
            let o = g.matvec(&format!("blk.{l}.attn_output.weight"), &attn);
            xs[pos].iter_mut().zip(o).for_each(|(x, y)| *x += y);
            let h = g.rms_norm(&format!("blk.{l}.ffn_norm.weight"), &xs[pos]);
            let gate = g.matvec(&format!("blk.{l}.ffn_gate.weight"), &h);
            let up = g.matvec(&format!("blk.{l}.ffn_up.weight"), &h);
            let act: Vec<f32> = gate.iter().zip(&up).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            let down = g.matvec(&format!("blk.{l}.ffn_down.weight"), &act);
            xs[pos].iter_mut().zip(down).for_each(|(x, y)| *x += y);
        }
    }
    let head = if g.tensors.contains_key("output.weight") { "output.weight" } else { "token_embd.weight" };
    xs.iter().flat_map(|x| g.matvec(head, &g.rms_norm("output_norm.weight", x))).collect()
}

/// Byte tokens then two control tokens, like a (merge-less) byte-level BPE.
fn tiny_tokenizer(n_normal: usize) -> GgufTokenizer {
    let mut tokens: Vec<String> = (0..n_normal).map(|i| format!("t{i}")).collect();
    tokens.extend(["<|endoftext|>".to_owned(), "<|end_of_turn|>".to_owned()]);
    let mut token_types = vec![GgufTokenType::Normal; n_normal];
    token_types.extend([GgufTokenType::Control; 2]);
    GgufTokenizer {
        tokens,
        token_types,
        merges: vec!["t1 t2".into()],
        pre: "gpt-2".into(),
        bos_token_id: Some(n_normal as u32),
        eos_token_id: Some(n_normal as u32),
        eot_token_id: Some(n_normal as u32 + 1),
        padding_token_id: None,
        chat_template: Some("{{ messages }}".into()),
    }
}

#[test]
fn export_parses_back_and_reproduces_logits_with_llama_cpp_semantics() {
    let dev = device();
    let ids = [3usize, 17, 42, 8, 0, 49, 25, 11];
    for (config, dtype, tolerance) in [
        (DecoderConfig { vocab_size: 50, d_model: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, d_ff: 40, max_seq_len: 16, rope_theta: 500.0, init_std: 0.2, ..DecoderConfig::default() }, GgufDtype::F32, 1e-4),
        (DecoderConfig { vocab_size: 50, d_model: 32, n_layers: 1, n_heads: 2, d_ff: 24, max_seq_len: 16, tie_embeddings: false, init_std: 0.2, ..DecoderConfig::default() }, GgufDtype::F16, 2e-2),
    ] {
        let model = config.init(&dev).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        let options = GgufOptions { dtype, ..GgufOptions::default() };
        let export = export_gguf_llama(&model, &tiny_tokenizer(40), &options, &path).unwrap();
        let g = parse(std::fs::read(&path).unwrap());
        assert_eq!(export.bytes, g.bytes.len());

        assert_eq!(g.version, 3);
        assert_eq!(g.kv.len(), export.n_metadata);
        assert_eq!(g.kv["general.architecture"], Value::Str("llama".into()));
        assert_eq!(g.kv["tokenizer.ggml.model"], Value::Str("gpt2".into()));
        assert_eq!(g.int("llama.vocab_size"), 50);
        assert_eq!(g.int("llama.context_length"), 16);
        assert_eq!(g.int("llama.embedding_length"), 32);
        assert_eq!(g.int("llama.block_count"), config.n_layers);
        assert_eq!(g.int("llama.feed_forward_length"), config.d_ff);
        assert_eq!(g.int("llama.attention.head_count"), config.n_heads);
        assert_eq!(g.int("llama.attention.head_count_kv"), config.kv_heads());
        assert_eq!(g.int("llama.rope.dimension_count"), 32 / config.n_heads);
        assert_eq!(g.f32("llama.rope.freq_base"), config.rope_theta as f32);
        assert_eq!(g.int("tokenizer.ggml.eot_token_id"), 41);
        assert!(!g.kv.contains_key("tokenizer.ggml.padding_token_id"));
        // 42 tokenizer entries padded to the model's 50 rows with unused fillers.
        let Value::Array(token_list) = &g.kv["tokenizer.ggml.tokens"] else { panic!() };
        let Value::Array(types) = &g.kv["tokenizer.ggml.token_type"] else { panic!() };
        assert_eq!((token_list.len(), types.len()), (50, 50));
        assert_eq!(token_list[40], Value::Str("<|endoftext|>".into()));
        assert_eq!((types[0].clone(), types[41].clone(), types[42].clone()), (Value::Int(1), Value::Int(3), Value::Int(5)));

        assert_eq!(g.tensor_order, export.tensor_names);
        assert_eq!(g.tensor_order[0], "token_embd.weight");
        assert_eq!(g.tensors.len(), 2 + 9 * config.n_layers + usize::from(!config.tie_embeddings));
        let kv_width = config.kv_heads() * (32 / config.n_heads);
        assert_eq!(g.tensors["token_embd.weight"].ne, vec![32, 50]);
        assert_eq!(g.tensors["blk.0.attn_q.weight"].ne, vec![32, 32]);
        assert_eq!(g.tensors["blk.0.attn_k.weight"].ne, vec![32, kv_width]);
        assert_eq!(g.tensors["blk.0.ffn_gate.weight"].ne, vec![32, config.d_ff]);
        assert_eq!(g.tensors["blk.0.ffn_down.weight"].ne, vec![config.d_ff, 32]);
        assert_eq!(g.tensors["blk.0.attn_norm.weight"].ne, vec![32]);
        assert_eq!(g.tensors["blk.0.attn_norm.weight"].dtype, 0, "norms stay f32");
        assert_eq!(g.tensors["blk.0.attn_q.weight"].dtype, if dtype == GgufDtype::F16 { 1 } else { 0 });
        assert_eq!(g.tensors.contains_key("output.weight"), !config.tie_embeddings);
        // Tensors lie one after another, each on a 32-byte boundary, the last ending the file.
        let mut infos: Vec<&TensorInfo> = g.tensors.values().collect();
        infos.sort_by_key(|t| t.offset);
        let elem = |t: &TensorInfo| if t.dtype == 1 { 2 } else { 4 };
        for pair in infos.windows(2) {
            assert_eq!(pair[1].offset % 32, 0);
            assert_eq!(pair[1].offset, (pair[0].offset + pair[0].ne.iter().product::<usize>() * elem(pair[0])).next_multiple_of(32));
        }
        let last = infos[infos.len() - 1];
        assert_eq!(g.data_start + last.offset + last.ne.iter().product::<usize>() * elem(last), g.bytes.len());

        let ours = to_vec(model.forward(tokens(&[&ids.map(|i| i as i64)], &dev)));
        let reference = llama_cpp_logits(&g, &ids);
        let diff = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff < tolerance, "{dtype:?}: llama.cpp-semantics logits differ by {diff}");
    }
}

#[test]
fn unsupported_models_and_bad_tokenizers_are_refused() {
    let dev = device();
    let small = DecoderConfig { vocab_size: 20, d_model: 16, n_layers: 1, n_heads: 2, max_seq_len: 8, ..DecoderConfig::default() };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.gguf");
    for (config, key) in [
        (DecoderConfig { bias: true, ..small.clone() }, "bias"),
        (DecoderConfig { mlp: MlpKind::Gelu, ..small.clone() }, "mlp"),
    ] {
        let model = config.init(&dev).unwrap();
        match export_gguf_llama(&model, &tiny_tokenizer(10), &GgufOptions::default(), &path) {
            Err(ModelError::UnsupportedExport { key: got, .. }) => assert_eq!(got, key),
            other => panic!("expected a refusal naming {key}, got {other:?}"),
        }
    }
    let model = small.init(&dev).unwrap();
    let err = export_gguf_llama(&model, &tiny_tokenizer(30), &GgufOptions::default(), &path).unwrap_err();
    assert!(err.to_string().contains("32 tokens but the model's vocab_size is 20"), "{err}");
    assert!(!path.exists(), "no file is written for a refused export");
}
