"""README's configuration reference and benchmark table are generated; they must match."""

from geospot import docs


def test_readme_generated_sections_are_current():
    text = docs.README.read_text()
    assert docs.render(text) == text, "README.md drifted from the code: run `python -m geospot.docs`"


def test_config_reference_lists_every_key():
    import dataclasses

    from geospot.train.rl import RLConfig
    from geospot.train.sft import SFTConfig

    ref = docs.config_reference()
    for cls in (SFTConfig, RLConfig):
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in ref
