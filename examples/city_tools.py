"""Functions for examples/city_report.yaml (the `python` plugin finds this file beside it)."""


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
