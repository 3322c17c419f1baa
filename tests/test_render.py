"""render.py: every result becomes strict JSON (no NaN), nothing silently dropped."""
from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from opflow.worker.render import HEAD_ROWS, MAX_ITEMS, MAX_TEXT, render


def strict_json(value):
    """render(value), checked to survive a strict JSON round trip unchanged."""
    rendered = render(value)
    text = json.dumps(rendered, allow_nan=False)
    assert json.loads(text) == rendered
    return rendered


@pytest.mark.parametrize("value", [None, True, False, 0, -7, 2**70, 1.5, "text", "", [], {}])
def test_plain_values_render_as_themselves(value):
    assert strict_json(value) == value
    assert type(render(value)) is type(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinities_become_null(value):
    assert strict_json(value) is None


def test_containers_render_recursively():
    value = {"a": [1, (2, float("nan"))], 3: {"b": None}, "s": {4}}
    assert strict_json(value) == {"a": [1, [2, None]], "3": {"b": None}, "s": [4]}


def test_long_containers_and_text_are_cut_with_a_note():
    rendered = strict_json(list(range(MAX_ITEMS + 5)))
    assert len(rendered) == MAX_ITEMS + 1
    assert rendered[:3] == [0, 1, 2] and rendered[-1] == "... 5 more items"
    mapping = strict_json({i: i for i in range(MAX_ITEMS + 2)})
    assert mapping["..."] == "2 more items" and len(mapping) == MAX_ITEMS + 1
    text = strict_json("x" * (MAX_TEXT + 10))
    assert text.startswith("x" * MAX_TEXT) and text.endswith("... [10 more characters]")


def test_dataframe_renders_rows_columns_dtypes_and_head():
    frame = pd.DataFrame({
        "name": ["a", "b", "c", "d", "e", "f", "g"],
        "n": [1, 2, 3, 4, 5, 6, 7],
        "x": [0.5, float("nan"), 2.5, 3.5, 4.5, 5.5, 6.5],
        "ok": [True, False, True, True, False, True, False],
    })
    rendered = strict_json(frame)
    assert rendered["type"] == "DataFrame"
    assert rendered["rows"] == 7
    assert rendered["columns"] == ["name", "n", "x", "ok"]
    assert rendered["dtypes"]["n"] == "int64" and rendered["dtypes"]["x"] == "float64"
    assert rendered["dtypes"]["ok"] == "bool"
    assert rendered["dtypes"]["name"] == str(frame["name"].dtype)
    assert len(rendered["head"]) == HEAD_ROWS == 5
    assert rendered["head"][0] == {"name": "a", "n": 1, "x": 0.5, "ok": True}
    assert rendered["head"][1]["x"] is None  # NaN -> null, not the string "NaN"
    assert type(rendered["head"][0]["n"]) is int and type(rendered["head"][0]["ok"]) is bool


def test_small_and_empty_dataframes():
    assert strict_json(pd.DataFrame({"a": [1]}))["head"] == [{"a": 1}]
    empty = strict_json(pd.DataFrame({"a": pd.Series([], dtype="float64")}))
    assert empty["rows"] == 0 and empty["columns"] == ["a"] and empty["head"] == []
    assert empty["dtypes"] == {"a": "float64"}


def test_dataframe_with_non_string_labels_and_timestamps():
    frame = pd.DataFrame({0: [pd.Timestamp("2024-01-02T03:04:05")], ("a", "b"): [pd.NaT], "d": [Decimal("1.5")]})
    rendered = strict_json(frame)
    assert rendered["columns"] == ["0", "('a', 'b')", "d"]
    assert rendered["head"] == [{
        "0": "2024-01-02T03:04:05",
        "('a', 'b')": None,  # NaT is a missing value, as NaN is: null, not the text "NaT"
        "d": {"type": "decimal.Decimal", "repr": "Decimal('1.5')"},
    }]


def test_pandas_missing_values_become_null():
    assert strict_json(pd.NaT) is None
    assert strict_json({"x": pd.NA, "y": pd.NaT}) == {"x": None, "y": None}
    series = strict_json(pd.Series([pd.NaT, pd.Timestamp("2024-01-01")]))
    assert series["head"] == [None, "2024-01-01T00:00:00"]
    frame = strict_json(pd.DataFrame({"a": pd.array([1, None], dtype="Int64"),
                                      "s": pd.array(["x", None], dtype="string")}))
    assert frame["head"] == [{"a": 1, "s": "x"}, {"a": None, "s": None}]
    assert frame["dtypes"] == {"a": "Int64", "s": "string"}


def test_series_renders_name_rows_dtype_head():
    rendered = strict_json(pd.Series([1.0, float("nan"), 3.0], name="score"))
    assert rendered == {"type": "Series", "name": "score", "rows": 3, "dtype": "float64", "head": [1.0, None, 3.0]}


def test_other_pandas_objects_render_as_type_and_repr():
    rendered = strict_json(pd.Index([1, 2, 3]))
    assert rendered["type"].startswith("pandas.") and "Index" in rendered["type"]
    assert "1, 2, 3" in rendered["repr"]


@pytest.mark.parametrize("value, expected", [
    (np.int64(7), 7), (np.int32(-3), -3), (np.float64(2.5), 2.5), (np.float32(0.5), 0.5),
    (np.bool_(True), True), (np.float64("nan"), None), (np.float64("inf"), None), (np.str_("hi"), "hi"),
])
def test_numpy_scalars_become_plain_json_values(value, expected):
    rendered = strict_json(value)  # json.dumps (no default=) would reject np.int64 / np.bool_
    assert rendered == expected
    assert isinstance(rendered, type(expected))  # np.float64/np.str_ subclass float/str: fine as JSON


def test_numpy_values_inside_containers():
    assert strict_json({"count": np.int64(3), "mean": np.float64("nan")}) == {"count": 3, "mean": None}


def test_numpy_array_renders_shape_dtype_and_head():
    rendered = strict_json(np.arange(12, dtype="int64").reshape(3, 4))
    assert rendered == {"type": "ndarray", "shape": [3, 4], "dtype": "int64", "head": [0, 1, 2, 3, 4]}
    with_nan = strict_json(np.array([np.nan, 1.0]))
    assert with_nan["head"] == [None, 1.0]


def test_bytes_render_as_type_and_size():
    assert strict_json(b"abc") == {"type": "bytes", "size": 3}
    assert strict_json(bytearray(10)) == {"type": "bytearray", "size": 10}


def test_unrepresentable_objects_render_as_type_and_repr():
    class Thing:
        def __repr__(self):
            return "<Thing 42>"

    rendered = strict_json(Thing())
    assert rendered["type"].endswith("Thing") and rendered["repr"] == "<Thing 42>"
    rendered = strict_json(dt.date(2024, 5, 6))
    assert rendered == {"type": "datetime.date", "repr": "datetime.date(2024, 5, 6)"}


def test_a_broken_repr_does_not_break_rendering():
    class Broken:
        def __repr__(self):
            raise RuntimeError("no repr for you")

    rendered = strict_json({"x": Broken()})
    assert rendered["x"]["type"].endswith("Broken")
    assert "unrepresentable" in rendered["x"]["repr"] and "no repr for you" in rendered["x"]["repr"]


def test_huge_reprs_are_cut():
    class Loud:
        def __repr__(self):
            return "y" * 10_000

    rendered = strict_json(Loud())
    assert len(rendered["repr"]) <= 503 and rendered["repr"].endswith("...")


def test_deep_nesting_stops_instead_of_recursing_forever():
    deep: list = []
    node = deep
    for _ in range(100):
        node.append([])
        node = node[0]
    rendered = strict_json(deep)
    depth = 0
    while isinstance(rendered, list) and rendered:
        rendered = rendered[0]
        depth += 1
    assert isinstance(rendered, dict) and rendered["type"] == "list"
    assert depth < 100


def test_self_referencing_containers_do_not_recurse_forever():
    loop: list = [1]
    loop.append(loop)
    rendered = strict_json(loop)
    assert rendered[0] == 1


def test_metrics_shaped_result_with_nan_is_strict_json():
    described = pd.Series([1.0]).describe()
    result = {"a": {stat: float(described[stat]) for stat in described.index}}
    rendered = strict_json(result)
    assert rendered["a"]["count"] == 1.0 and rendered["a"]["std"] is None
    assert not any(isinstance(v, float) and math.isnan(v) for v in rendered["a"].values())
