"""A Hugging Face model directory with random weights, for what only the shapes matter to.

No real model can reach the GPU machine these checks run on (the smallest, the tests' 98 MB GGUF,
is over what travels to it), and a GPU test of the training backends needs a directory that
transformers, PEFT and Unsloth load as they would a real one: a Qwen2 model (the demo pair's
architecture) with a byte-level BPE tokenizer trained on the spot, a ChatML chat template and
random weights. Its outputs mean nothing; its speed and memory are those of its shape.

    python tests/random_model.py DIR [--shape tiny|0.5b]
"""

from __future__ import annotations

import argparse
from pathlib import Path

SHAPES = {
    # two small layers: loads and trains in seconds
    # (weights drawn wider than transformers' 0.02, or the tied output layer's logits could not
    # leave a narrow band: no training could bring the loss below about 3.8)
    "tiny": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, initializer_range=0.1),
    # Qwen2.5-Coder-0.5B-Instruct's shape (the demo student), for speed and memory figures
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, vocab_size=151936),
}
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "You are an expert Python programmer.",
    "Write a function that returns the sum of a list of numbers.",
    "def add(a, b):\n    return a + b\n",
    "```python\ndef f(x):\n    return [i * i for i in range(x) if i % 2 == 0]\n```",
    "assert f(3) == 1, 'expected one'\nimport math\nclass Stack:\n    pass\n",
]


def make_random_model(target: Path, shape: str = "tiny", seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(target)
    dims = dict(SHAPES[shape])
    dims.setdefault("vocab_size", len(tokenizer))
    torch.manual_seed(seed)
    config = Qwen2Config(**dims, max_position_embeddings=4096, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(target)
    return target


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    args = parser.parse_args()
    print(make_random_model(args.target, args.shape))
