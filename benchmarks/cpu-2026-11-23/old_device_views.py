"""For runs c5 and c6: the DeviceMIMDataPreprocessor of commit 20ed23c (one image at a time,
torch's float32 antialiased resize), read with `git show` from the repository root and
registered as ``OldDeviceMIMDataPreprocessor`` beside today's."""
import subprocess

OLD_COMMIT = '20ed23c'
OLD_NAME = 'OldDeviceMIMDataPreprocessor'


def register_old_preprocessor() -> str:
    """Registers 20ed23c's preprocessor in mmpretrain's MODELS; returns its registry name."""
    source = subprocess.run(['git', 'show', f'{OLD_COMMIT}:beitv2_mm/datasets/device_views.py'],
                            check=True, capture_output=True, text=True).stdout
    source = source.replace('from .mim_transforms', 'from beitv2_mm.datasets.mim_transforms')
    source = source.replace('from .transforms', 'from beitv2_mm.datasets.transforms')
    source = source.replace('@TRANSFORMS.register_module()', '')  # today's transforms stay
    source = source.replace("@MODELS.register_module()\nclass DeviceMIMDataPreprocessor",
                            f"@MODELS.register_module(name='{OLD_NAME}')\n"
                            "class DeviceMIMDataPreprocessor")
    exec(compile(source, 'old_device_views.py', 'exec'), {'__name__': 'old_device_views'})
    return OLD_NAME
