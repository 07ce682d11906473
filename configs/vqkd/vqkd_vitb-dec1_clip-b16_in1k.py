# BEiT v2 VQ-KD with a 1-layer decoder (official vqkd_encoder_base_decoder_1x768x12_clip);
# otherwise as vqkd_vitb_clip-b16_in1k.py.
_base_ = [
    '../_base_/vqkd_vitb_model.py',
    '../_base_/vqkd_in1k_data.py',
    '../_base_/vqkd_runtime.py',
]
model = dict(tokenizer=dict(decoder=dict(arch=dict(num_layers=1))))
