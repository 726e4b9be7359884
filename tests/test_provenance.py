"""Provenance in the registry: every model's source project cited (title and URL as the project
gives them, or "not published"), and whose each default recipe is, backed by a note."""

from __future__ import annotations

import pytest
from torch import nn

from cifar_demo import zoo
from cifar_demo.zoo import sources


def test_every_reported_accuracy_and_source_recipe_cites_its_project():
    for s in zoo.specs():
        assert s.recipe_source in ("source", "ours") and s.recipe_note, s.name
        if s.reported_accuracy is not None or s.recipe_source == "source":
            assert s.project in sources.PROJECTS, s.name
    # Each source project is cited by some model, and only ours go uncited.
    assert {s.project for s in zoo.specs()} - {None} == set(sources.PROJECTS)
    assert all(s.source.startswith("ours") for s in zoo.specs() if s.project is None)


def test_citations_give_the_url_or_say_not_published():
    for project in sources.PROJECTS:
        if project.url is None:
            assert project.citation() == f"{project.title}, not published"
            assert project.markdown() == f"*{project.title}*, not published"
        else:
            assert project.url.startswith("https://") and project.url in project.markdown()
            assert project.citation() == f"{project.title}, {project.url}"


CITED = {"project": sources.RESNET_STUDY_PROJECT}


@pytest.mark.parametrize("fields, message, fix", [
    ({"recipe_source": "theirs"}, "recipe_source 'theirs'", {"recipe_source": "ours"}),
    ({"recipe_source": "source"}, "needs the source project cited", CITED),
    ({"reported_accuracy": 90.0}, "needs the source project that reports it", CITED),
])
def test_spec_refuses_provenance_it_cannot_back(fields, message, fix):
    base = dict(name="_bad", family="test", source="test", reported_accuracy=None, params=6, macs=4,
                recipe={}, description="", builder=lambda **kw: nn.Linear(2, 2))
    with pytest.raises(ValueError, match=message):
        zoo.ModelSpec(**{**base, **fields})
    zoo.ModelSpec(**{**base, **fields, **fix})  # the same spec, backed: accepted
