//! The `builtin` provider's place in a chain. The built-in test designer is not an LLM: the
//! worker runs it itself (`pipeline/designer.rs`) when it is the configured provider, or when it
//! is the last of the chain and every LLM before it failed. Asked to chat, it declines at once,
//! so a chain that reaches it fails fast and the worker takes over; probed, it is always up.

use async_trait::async_trait;

use super::{ChatProvider, ChatRequest, ChatResponse, LlmError, ProviderSettings};

pub struct Builtin {
    model: String,
}

impl Builtin {
    pub fn new(settings: ProviderSettings) -> Builtin {
        Builtin {
            model: settings.model,
        }
    }
}

#[async_trait]
impl ChatProvider for Builtin {
    fn name(&self) -> &str {
        "builtin"
    }

    fn model(&self) -> &str {
        &self.model
    }

    async fn chat(&self, _req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        Err(LlmError::InvalidRequest {
            status: 0,
            body: "the built-in test designer takes no chat requests; the worker runs it".into(),
        })
    }

    async fn probe(&self) -> Result<(), LlmError> {
        Ok(())
    }
}
