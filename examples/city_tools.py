"""Functions for examples/city_report.yaml (the `python` plugin finds this file beside it)."""
import pathlib


def city_scores(city, min_score, context):
    frame = context["ingest"]
    rows = frame[frame["city"] == city]
    return {"city": city, "people": int(len(rows)), "above_bar": int((rows["score"] >= min_score).sum())}


def summarize(context):
    per_city = context["per_city"]  # a list: one result per foreach instance, in order
    return {
        "cities": [r["city"] for r in per_city],
        "above_bar": sum(r["above_bar"] for r in per_city),
        "mean_score": round(context["stats"]["score"]["mean"], 2),
    }


def fetch_rates(outage=""):
    """Exchange rates, as a call to a web service would return them (here: fixed).

    `outage` names a file that simulates a transient outage: where it is missing, the call
    fails with a 503 and writes it; the retry finds it, removes it and succeeds (so the
    next run sees the outage again). docs/make_screenshot.py uses it to show a retry."""
    if outage:
        marker = pathlib.Path(outage)
        if not marker.exists():
            marker.write_text("503")
            raise ConnectionError("GET https://rates.example/v1/eur: 503 Service Unavailable")
        marker.unlink()
    return {"EUR": 1.0, "USD": 1.08, "GBP": 0.86}
