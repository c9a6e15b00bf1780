"""Suite-wide set-up: no network for wandb, two CPU threads, the offline tiny models, and randomly
initialised tiny causal LMs for tests of token-id APIs (no tokenizer needed)."""
import os

os.environ["WANDB_MODE"] = "offline"  # no test touches the network

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM  # noqa: E402

torch.set_num_threads(2)


def single_thread():
    """Token-by-token generation of tiny models is latency-bound: one thread is faster on a shared CPU.
    Packages that generate a lot bind it as an autouse fixture in their conftest.py."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, str]:
    """Paths of the tiny models {"base": ..., "chat": ...}, built once (a no-op when cached)."""
    from tiny.build import build_tiny_models

    paths = build_tiny_models(show_progress=False)
    return {"base": paths["tiny-base"], "chat": paths["tiny-chat"]}


# Randomly initialised tiny causal LMs

def random_llama(seed: int = 0, vocab_size: int = 97, num_layers: int = 2):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=num_layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


def random_gemma2(seed: int = 0, vocab_size: int = 97):
    """Tied embeddings and final-logit soft-capping: the LM-head transforms logprobs must reproduce."""
    torch.manual_seed(seed)
    config = Gemma2Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=128,
                          final_logit_softcapping=2.0, attn_implementation="eager")
    return Gemma2ForCausalLM(config).eval()


@pytest.fixture(scope="session", params=["llama", "gemma2"])
def random_lm(request):
    return random_llama() if request.param == "llama" else random_gemma2()


@pytest.fixture
def random_pairs():
    """Prompts and responses of varied lengths as token-id lists."""
    g = torch.Generator().manual_seed(1)

    def ids(n):
        return torch.randint(3, 97, (n,), generator=g).tolist()

    prompts = [ids(n) for n in (5, 1, 9, 3, 7)]
    preferred = [ids(n) for n in (4, 6, 1, 8, 2)]
    dispreferred = [ids(n) for n in (2, 3, 7, 1, 5)]
    return prompts, preferred, dispreferred
