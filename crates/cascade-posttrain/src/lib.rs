//! Post-training for Cascade models: supervised fine-tuning of the decoder into a chat model,
//! the encoder as a reply judge, the encoder-decoder as a reply generator, and DPO.
//!
//! Post-training reuses cascade-pretrain's loop pieces (optimizer, schedule, clipping,
//! checkpoints) rather than writing its own: see docs/ARCHITECTURE.md for why this stage crate
//! depends on the pretraining crate.
#![deny(missing_docs)]

pub mod batch;
pub mod data_source;
pub mod dataset;
pub mod dialogue;
mod error;
pub mod replies;
pub mod sft;
mod sft_config;
pub mod judge;
pub mod seq2seq;
mod tuning;
pub mod preference;
pub mod dpo_loss;
pub mod dpo;
mod dpo_config;

pub use data_source::{DataSourceConfig, DataSourceReport, SftData, load_conversations};
pub use dataset::{Conversation, DatasetReport, ReadMode, SkipReason, read_conversations, write_conversations};
pub use dialogue::{DialogueConfig, DialogueReport, build_conversations, conversations_from_shard};
pub use error::PosttrainError;
pub use sft::{ReplyEval, SftJob, SftReport, SftStepMetrics, evaluate_replies, train_sft};
pub use replies::{FormatReport, SampleSettings, measure_format};
pub use sft_config::SftConfig;
pub use judge::{JudgeConfig, JudgeReport, ReplyJudge, train_judge};
pub use seq2seq::{Seq2SeqConfig, Seq2SeqReport, train_seq2seq};
pub use tuning::{ReplyPair, TuneError, TuneStepMetrics};
pub use preference::{PairReport, PairSkipReason, PreferencePair, mismatched_pairs, read_pairs, write_pairs};
pub use dpo_loss::{DpoLoss, DpoLossKind, PairLogps, PreferenceStats};
pub use dpo::{DpoJob, DpoReport, DpoStepMetrics, EncodedPair, encode_pairs, train_dpo};
pub use dpo_config::{DpoConfig, DpoPairsConfig, RejectedSource};
