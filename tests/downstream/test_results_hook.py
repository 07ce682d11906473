"""DownstreamResultsHook / results.json helpers."""
import json

import pytest

from beitv2_mm.downstream.results_hook import (DownstreamResultsHook, is_synthetic_root,
                                               write_json_atomic)


def test_atomic_write_and_synthetic_detection(tmp_path):
    path = tmp_path / 'results.json'
    write_json_atomic(path, {'a': 1})
    write_json_atomic(path, {'a': 2})
    assert json.loads(path.read_text()) == {'a': 2}
    assert [p.name for p in tmp_path.iterdir()] == ['results.json']
    assert is_synthetic_root('data/synthetic/imagenet')
    assert not is_synthetic_root('/datasets/imagenet')
    assert not is_synthetic_root(None)
    from beitv2_mm.datasets.synthetic import SYNTHETIC_CLASSES
    assert is_synthetic_root('/tmp/x', classes=list(SYNTHETIC_CLASSES))
    assert not is_synthetic_root('/tmp/x', classes=['cat', 'dog'])


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match='task must be one of'):
        DownstreamResultsHook(task='detection', dataset_name='COCO')


def test_eval_dataset_size_and_classes():
    """The evaluated dataset gives the sample count and the class names (synthetic detection
    when the data root does not say 'synthetic'); a loop without a dataset gives None."""
    from types import SimpleNamespace

    from beitv2_mm.datasets.synthetic import SYNTHETIC_CLASSES
    from beitv2_mm.downstream.results_hook import (_dataset_classes, _dataset_size,
                                                   _eval_dataset)

    class Data(list):
        metainfo = dict(classes=SYNTHETIC_CLASSES)

    runner = SimpleNamespace(val_loop=SimpleNamespace(dataloader=SimpleNamespace(
        dataset=Data(range(7)))), test_loop=None)
    dataset = _eval_dataset(runner, 'val')
    assert _dataset_size(dataset) == 7 and _dataset_classes(dataset) == SYNTHETIC_CLASSES
    assert _eval_dataset(runner, 'test') is None
    assert _dataset_size(None) is None and _dataset_classes(None) is None
