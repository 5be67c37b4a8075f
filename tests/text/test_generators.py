"""The built-in generators: seeded, varied, and with their domain's real structure."""

from __future__ import annotations

import re

import pytest

from featstore.errors import FeatstoreError
from featstore.text.generators import GENERATORS, MAX_DOCS, generate_documents


@pytest.mark.parametrize("kind", list(GENERATORS))
def test_seeded_varied_and_prefix_stable(kind):
    docs = generate_documents(kind, 200, seed=1)
    assert docs == generate_documents(kind, 200, seed=1)
    assert docs[:50] == generate_documents(kind, 50, seed=1)
    assert docs != generate_documents(kind, 200, seed=2)
    assert len(set(docs)) == len(docs)
    # not a handful of templates: most word 6-grams of a fresh sample are not in the first sample
    def sixgrams(texts):
        grams = set()
        for text in texts:
            words = text.split()
            grams.update(tuple(words[i : i + 6]) for i in range(len(words) - 5))
        return grams

    seen, fresh = sixgrams(docs[:100]), sixgrams(docs[100:])
    assert len(fresh - seen) / len(fresh) > (0.2 if kind == "childes" else 0.3)


def test_lua_programs_compile_with_a_real_lua():
    lupa = pytest.importorskip("lupa")
    compile_error = lupa.LuaRuntime().eval("function(src) local f, err = load(src); return err end")
    docs = generate_documents("lua", 300, seed=0)
    assert [compile_error(d) for d in docs] == [None] * len(docs)
    text = "\n".join(docs)
    for construct in ("local function", "for i = 1,", "in ipairs(", "in pairs(", "then", "elseif", "else",
                      "end", "while", "repeat", "until", "return", "string.format(", "..", "-- ", "{"):
        assert construct in text, construct


def test_stories_keep_their_characters():
    for text in generate_documents("stories", 100, seed=0):
        hero = re.match(r"(Once upon a time, there was|One day, there was|There once was) a \w+ \w+ named (\w+)\.", text)
        assert hero, text[:80]
        assert text.count(hero.group(2)) >= 3
        assert text.rstrip().endswith(".")


def test_childes_transcripts_have_speaker_tiers():
    lines = [line for text in generate_documents("childes", 100, seed=0) for line in text.strip().split("\n")]
    assert all(re.match(r"^\*(MOT|FAT|CHI):\t\S.* [.?!]$", line) for line in lines)
    child_share = sum(line.startswith("*CHI") for line in lines) / len(lines)
    assert 0.2 < child_share < 0.5


def test_bad_requests():
    with pytest.raises(FeatstoreError, match="unknown generator 'cobol'"):
        generate_documents("cobol", 3)
    for n_docs in (0, MAX_DOCS + 1):  # more would be held in memory at once
        with pytest.raises(FeatstoreError, match="needs docs from 1 to 1,000,000"):
            generate_documents("lua", n_docs)
