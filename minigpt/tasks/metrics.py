"""Task metrics: accuracy, BIO entity spans and entity-level precision, recall and F1."""
from __future__ import annotations

__all__ = ["accuracy", "bio_entities", "entity_prf"]


def accuracy(gold, pred) -> float:
    """The share of examples (or tokens) whose prediction equals the gold label; 0.0 for none."""
    gold, pred = list(gold), list(pred)
    if len(gold) != len(pred):
        raise ValueError(f"accuracy: {len(gold)} gold labels but {len(pred)} predictions")
    return sum(g == p for g, p in zip(gold, pred)) / len(gold) if gold else 0.0


def bio_entities(tags) -> set:
    """Entity spans (start, end exclusive, type) of a BIO tag sequence, conlleval's way: an I-X
    that does not continue an entity of type X starts a new one."""
    spans, start, kind = set(), None, None
    for i, t in enumerate(list(tags) + ["O"]):
        t = str(t)
        prefix, _, typ = t.partition("-")
        if t == "O" or prefix == "B" or (prefix == "I" and (kind is None or typ != kind)):
            if start is not None:
                spans.add((start, i, kind))
                start, kind = None, None
            if prefix in ("B", "I"):
                start, kind = i, typ
    return spans


def entity_prf(gold_seqs, pred_seqs) -> dict:
    """Entity-level precision, recall and F1 (exact span and type match), micro-averaged."""
    tp = n_pred = n_gold = 0
    for g, p in zip(gold_seqs, pred_seqs):
        gs, ps = bio_entities(g), bio_entities(p)
        tp += len(gs & ps)
        n_pred += len(ps)
        n_gold += len(gs)
    prec = tp / n_pred if n_pred else 0.0
    rec = tp / n_gold if n_gold else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": prec, "recall": rec, "f1": f1, "gold": n_gold, "predicted": n_pred,
            "correct": tp}
