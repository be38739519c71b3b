//! The chat template: one way to turn a conversation into token ids, shared by supervised
//! fine-tuning (with its loss mask), evaluation, the chat REPL and the server.
//!
//! A conversation renders as one block per turn, each opened by its role's special token and
//! closed by `<|end_of_turn|>`:
//!
//! ```text
//! <|system|>You are Hamlet.<|end_of_turn|><|user|>Who's there?<|end_of_turn|><|assistant|>Nay, answer me.<|end_of_turn|>
//! ```
//!
//! Role markers are special tokens, never text: a user who types `<|assistant|>` gets the
//! characters, not the control token ([`AllowedSpecial::None`] on every content string).
//! Training puts loss only on assistant content and the `<|end_of_turn|>` closing it, so the
//! model learns to answer and to stop, not to imitate the user.

use serde::{Deserialize, Serialize};

use crate::tokenizer::{AllowedSpecial, Tokenizer};

/// Opens a system turn.
pub const SYSTEM_TOKEN: &str = "<|system|>";
/// Opens a user turn.
pub const USER_TOKEN: &str = "<|user|>";
/// Opens an assistant turn.
pub const ASSISTANT_TOKEN: &str = "<|assistant|>";
/// Closes any turn; generation of a reply stops on it.
pub const END_OF_TURN_TOKEN: &str = "<|end_of_turn|>";

/// Who speaks a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions framing the conversation.
    System,
    /// The person talking to the model.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The special token that opens this role's turn.
    pub fn token_name(self) -> &'static str {
        match self {
            Self::System => SYSTEM_TOKEN,
            Self::User => USER_TOKEN,
            Self::Assistant => ASSISTANT_TOKEN,
        }
    }
}

/// One turn of a conversation, in the OpenAI / HF `messages` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// What they say.
    pub content: String,
}

impl Message {
    /// A turn spoken by `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into() }
    }
}

/// A conversation rendered to ids, with the positions training learns from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedChat {
    /// Token ids of the whole conversation.
    pub ids: Vec<u32>,
    /// `true` where the token is assistant content or the `<|end_of_turn|>` closing an
    /// assistant turn: the tokens a supervised loss is computed on.
    pub loss_mask: Vec<bool>,
    /// `[start, end)` token range of each turn, role marker and end-of-turn included.
    pub turn_spans: Vec<(usize, usize)>,
}

/// Errors building a template for a tokenizer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// The tokenizer lacks a special token the template needs.
    #[error("the tokenizer has no special token {0}: train it with the reserved chat tokens")]
    MissingSpecialToken(&'static str),
}

/// The ids of the template's special tokens for one tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatTemplate {
    /// `<|system|>`.
    pub system: u32,
    /// `<|user|>`.
    pub user: u32,
    /// `<|assistant|>`.
    pub assistant: u32,
    /// `<|end_of_turn|>`.
    pub end_of_turn: u32,
}

impl ChatTemplate {
    /// Looks the template's special tokens up in `tokenizer`.
    pub fn new(tokenizer: &dyn Tokenizer) -> Result<Self, ChatError> {
        let id = |name: &'static str| {
            tokenizer.special_token(name).ok_or(ChatError::MissingSpecialToken(name))
        };
        Ok(Self {
            system: id(SYSTEM_TOKEN)?,
            user: id(USER_TOKEN)?,
            assistant: id(ASSISTANT_TOKEN)?,
            end_of_turn: id(END_OF_TURN_TOKEN)?,
        })
    }

    /// The id opening `role`'s turn.
    pub fn role_id(&self, role: Role) -> u32 {
        match role {
            Role::System => self.system,
            Role::User => self.user,
            Role::Assistant => self.assistant,
        }
    }

    /// Renders every turn of `messages`, each closed by `<|end_of_turn|>`, with the loss mask
    /// over assistant content and its closing token.
    pub fn encode(&self, tokenizer: &dyn Tokenizer, messages: &[Message]) -> EncodedChat {
        let mut chat = EncodedChat::default();
        for message in messages {
            let start = chat.ids.len();
            let learn = message.role == Role::Assistant;
            chat.ids.push(self.role_id(message.role));
            chat.loss_mask.push(false);
            let content = tokenizer.encode(&message.content, &AllowedSpecial::None);
            chat.loss_mask.extend(std::iter::repeat_n(learn, content.len()));
            chat.ids.extend(content);
            chat.ids.push(self.end_of_turn);
            chat.loss_mask.push(learn);
            chat.turn_spans.push((start, chat.ids.len()));
        }
        chat
    }

    /// Renders `messages` and opens an assistant turn: the prompt a model continues to reply.
    /// Generation stops when the model emits [`ChatTemplate::end_of_turn`].
    pub fn encode_prompt(&self, tokenizer: &dyn Tokenizer, messages: &[Message]) -> Vec<u32> {
        let mut ids = self.encode(tokenizer, messages).ids;
        ids.push(self.assistant);
        ids
    }

    /// Whether `id` is one of the template's control tokens (never shown to a reader).
    pub fn is_control(&self, id: u32) -> bool {
        [self.system, self.user, self.assistant, self.end_of_turn].contains(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::TokenizerError;

    /// One id per byte, specials from 256.
    struct Bytes;

    impl Tokenizer for Bytes {
        fn encode(&self, text: &str, _allowed: &AllowedSpecial) -> Vec<u32> {
            text.bytes().map(u32::from).collect()
        }
        fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
            Ok(ids.iter().filter(|&&id| id < 256).map(|&id| id as u8).collect())
        }
        fn vocab_size(&self) -> usize {
            260
        }
        fn special_token(&self, name: &str) -> Option<u32> {
            [SYSTEM_TOKEN, USER_TOKEN, ASSISTANT_TOKEN, END_OF_TURN_TOKEN]
                .iter()
                .position(|n| *n == name)
                .map(|idx| 256 + idx as u32)
        }
        fn fingerprint(&self) -> String {
            "bytes".into()
        }
    }

    #[test]
    fn loss_only_on_assistant_content_and_its_end_of_turn() {
        let template = ChatTemplate::new(&Bytes).unwrap();
        let chat = template.encode(
            &Bytes,
            &[Message::new(Role::System, "s"), Message::new(Role::User, "hi"), Message::new(Role::Assistant, "yo")],
        );
        assert_eq!(chat.ids, vec![256, b's' as u32, 259, 257, b'h' as u32, b'i' as u32, 259, 258, b'y' as u32, b'o' as u32, 259]);
        let learned: Vec<usize> = chat.loss_mask.iter().enumerate().filter(|(_, m)| **m).map(|(i, _)| i).collect();
        assert_eq!(learned, vec![8, 9, 10]);
        assert_eq!(chat.turn_spans, vec![(0, 3), (3, 7), (7, 11)]);
        assert_eq!(chat.ids.len(), chat.loss_mask.len());
    }

    #[test]
    fn prompt_opens_an_assistant_turn() {
        let template = ChatTemplate::new(&Bytes).unwrap();
        let ids = template.encode_prompt(&Bytes, &[Message::new(Role::User, "a")]);
        assert_eq!(ids, vec![257, b'a' as u32, 259, 258]);
    }

    #[test]
    fn missing_special_token_is_named() {
        struct Plain;
        impl Tokenizer for Plain {
            fn encode(&self, _: &str, _: &AllowedSpecial) -> Vec<u32> {
                vec![]
            }
            fn decode_bytes(&self, _: &[u32]) -> Result<Vec<u8>, TokenizerError> {
                Ok(vec![])
            }
            fn vocab_size(&self) -> usize {
                0
            }
            fn special_token(&self, _: &str) -> Option<u32> {
                None
            }
            fn fingerprint(&self) -> String {
                String::new()
            }
        }
        let err = ChatTemplate::new(&Plain).unwrap_err();
        assert!(err.to_string().contains("<|system|>"), "{err}");
    }

    #[test]
    fn messages_parse_from_openai_json() {
        let message: Message = serde_json::from_str(r#"{"role":"assistant","content":"x"}"#).unwrap();
        assert_eq!(message, Message::new(Role::Assistant, "x"));
    }
}
