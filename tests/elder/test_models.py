"""Where a model's tokenizer comes from."""

from elder.models import GGUF_TOKENIZER, gguf_tokenizer


def test_a_saved_tokenizer_folder_replaces_the_gguf_file(tmp_path, monkeypatch):
    gguf_tokenizer.cache_clear()
    packaged = gguf_tokenizer(GGUF_TOKENIZER)
    packaged.save_pretrained(str(tmp_path))
    gguf_tokenizer.cache_clear()
    monkeypatch.setenv("ELDER_TOKENIZER_DIR", str(tmp_path))
    monkeypatch.setattr("elder.models.packaged_file", lambda path: 1 / 0)  # never read
    try:
        saved = gguf_tokenizer(GGUF_TOKENIZER)
    finally:
        gguf_tokenizer.cache_clear()
    assert (
        saved("Paris is the capital of").input_ids == packaged("Paris is the capital of").input_ids
    )
    assert saved.pad_token == packaged.pad_token and saved.padding_side == "right"
