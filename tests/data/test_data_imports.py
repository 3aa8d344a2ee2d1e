"""The data layer has no import circle: sources know no cache, the cache writer consumes sources."""

from __future__ import annotations

from import_graph import cycles, import_graph


def test_no_import_circle_inside_data():
    graph = import_graph("ecgadapt.data")
    assert "ecgadapt.data.sources" in graph["ecgadapt.data.cache"]  # the graph is read at all
    assert cycles(graph) == []


def test_sources_do_not_import_the_cache():
    graph = import_graph("ecgadapt.data")
    assert "ecgadapt.data.cache" not in graph["ecgadapt.data.sources"]
    assert "ecgadapt.data.cache" not in graph["ecgadapt.data.records"]
