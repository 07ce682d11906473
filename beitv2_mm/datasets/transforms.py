"""Image loading with an explicit policy for unreadable or corrupt files.

``SafeLoadImageFromFile(on_error='raise')`` fails with the image's path and the fix;
``on_error='skip'`` returns ``None`` so mmengine's ``BaseDataset.__getitem__`` fetches another
index (training only: mmengine refuses ``None`` at test time, so evaluation always needs readable
images), and records the path. Skips are recorded in a small text file keyed by the main
process's pid, so skips inside dataloader workers are counted too; :class:`SkippedImagesHook`
reports the count and paths after every epoch and, at the end of the run, writes the full list
to ``<work_dir>/skipped_images.txt`` (every rank's skips, written by rank 0) and removes the
temporary file (until then :func:`skipped_images` returns them).
"""
import os
import tempfile
from collections import Counter
from typing import List, Optional

from mmcv.transforms import LoadImageFromFile
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmpretrain.registry import TRANSFORMS

from ..engine.checkpoint import atomic_write_text


class ImageLoadError(OSError):
    """An image file could not be read or decoded."""


def _skip_log_path(pid: Optional[int] = None) -> str:
    pid = os.getpid() if pid is None else pid
    return os.path.join(tempfile.gettempdir(), f'beitv2_mm_skipped_images_{pid}.txt')


def skipped_images(pid: Optional[int] = None) -> List[str]:
    """Paths skipped so far by ``SafeLoadImageFromFile(on_error='skip')`` of process ``pid``.

    Args:
        pid (int, optional): The main process whose transforms recorded the skips (workers
            record under their parent's pid). Defaults to the current process.

    Returns:
        list[str]: One entry per skip (a path appears again if it was fetched again).
    """
    path = _skip_log_path(pid)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip('\n') for line in f if line.strip()]


def reset_skipped_images(pid: Optional[int] = None) -> None:
    """Forget the skips recorded for process ``pid`` (defaults to the current one)."""
    try:
        os.remove(_skip_log_path(pid))
    except FileNotFoundError:
        pass


@TRANSFORMS.register_module()
class SafeLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` with a policy for unreadable or corrupt images.

    Args:
        on_error (str): ``'raise'``: raise :class:`ImageLoadError` naming the path;
            ``'skip'``: log a warning, record the path and return ``None`` (the dataset then
            fetches another sample; training only). Defaults to ``'raise'``.
        **kwargs: Arguments of mmcv's ``LoadImageFromFile`` (``ignore_empty`` is replaced by
            ``on_error``).
    """

    def __init__(self, on_error: str = 'raise', **kwargs) -> None:
        if on_error not in ('raise', 'skip'):
            raise ValueError(f"SafeLoadImageFromFile: on_error={on_error!r}; use 'raise' or "
                             f"'skip'.")
        if 'ignore_empty' in kwargs:
            raise ValueError("SafeLoadImageFromFile: use on_error='skip' instead of "
                             "ignore_empty.")
        super().__init__(**kwargs)
        self.on_error = on_error
        # Fixed at construction (in the main process), so forked/spawned dataloader workers
        # record their skips where the main process's hook looks.
        self.skip_log = _skip_log_path()

    def transform(self, results: dict) -> Optional[dict]:
        filename = results['img_path']
        try:
            out = super().transform(results)
        except Exception as e:  # noqa: BLE001  any read/decode failure, reported by path
            reason = f'{type(e).__name__}: {e}'
        else:
            return out
        if self.on_error == 'raise':
            raise ImageLoadError(
                f'cannot read image {filename} ({reason}). Replace or remove the file, or set '
                f"the loading transform to SafeLoadImageFromFile(on_error='skip') to skip "
                f'unreadable training images.')
        with open(self.skip_log, 'a') as f:
            f.write(f'{filename}\n')
        print_log(f'SafeLoadImageFromFile: skipped unreadable image {filename} ({reason})',
                  logger='current', level=30)
        return None

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", on_error='{self.on_error}')"


@HOOKS.register_module()  # mmengine's root registry: found from every scope
class SkippedImagesHook(Hook):
    """Report, at the end of the run, the images ``SafeLoadImageFromFile`` skipped.

    The count is also put into the message hub as ``data/skipped_images`` so it lands in the
    run's scalars. Each rank skips on its own; the reports are of every rank's skips (gathered:
    mmengine logs on rank 0 only). At the end of the run the list (one line per distinct file,
    with its count) goes to ``<work_dir>/skipped_images.txt``, and the temporary record is
    removed so it does not pile up in the temp directory.
    """

    priority = 'VERY_LOW'

    def before_run(self, runner) -> None:
        reset_skipped_images()

    @staticmethod
    def _all_ranks() -> List[str]:
        """Every rank's skips (a collective: every rank calls the hook)."""
        _, world_size = get_dist_info()
        if world_size == 1:
            return skipped_images()
        from mmengine.dist import all_gather_object
        return [path for part in all_gather_object(skipped_images()) for path in part]

    def _report(self, runner, when: str, skipped: List[str]) -> None:
        runner.message_hub.update_info('data/skipped_images', len(skipped))
        if skipped:
            unique = sorted(set(skipped))
            shown = ', '.join(unique[:10]) + (' ...' if len(unique) > 10 else '')
            runner.logger.warning(f'{when}: {len(skipped)} unreadable image reads were skipped '
                                  f'({len(unique)} distinct files): {shown}')
        elif when == 'end of run':
            runner.logger.info('end of run: no unreadable images were skipped.')

    def after_train_epoch(self, runner) -> None:
        self._report(runner, f'epoch {runner.epoch}', self._all_ranks())

    def after_run(self, runner) -> None:
        skipped = self._all_ranks()
        self._report(runner, 'end of run', skipped)
        if skipped and get_dist_info()[0] == 0:
            path = os.path.join(runner.work_dir, 'skipped_images.txt')
            counts = Counter(skipped)
            atomic_write_text(''.join(f'{p}\t{counts[p]}\n' for p in sorted(counts)), path)
            runner.logger.warning(f'the skipped images are listed in {path} (path, reads).')
        reset_skipped_images()
