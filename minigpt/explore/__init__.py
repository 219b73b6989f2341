"""minigpt.explore: a page that shows what a trained model does with a prompt.

    minigpt explore --ckpt runs/tiny                 a local page (http://127.0.0.1:8000/)
    minigpt explore --ckpt runs/tiny --prompt "ROMEO:" --static romeo.html    one offline file

The page shows the prompt's tokens; attention (a layer x head grid, and one head's lines from
each token to the tokens it attends to); the next-token distribution with temperature, top-k
and top-p recomputed as minigpt.sample does, and a "generate one token" step; the logit lens;
the backward pass (minigpt.trace of the prompt predicting itself) drawn from the loss back to
the embeddings with the parameters' gradient norms; and the run's loss curves.

    data.py      Explorer: the numbers (attention weights, lens, trace, sampling)
    page.py      the page's files (web/index.html, explore.js, explore.css) and --static
    server.py    the local HTTP server: the page's own files and a JSON API
    loading.py   load_explorer (a checkpoint and its run's metrics.jsonl), write_static
The command itself is minigpt/cli/explore.py.
"""
from .data import Explorer, PromptError
from .loading import find_metrics, load_explorer, write_static
from .page import static_html
from .server import make_server

__all__ = ["Explorer", "PromptError", "load_explorer", "find_metrics", "make_server",
           "static_html", "write_static"]
