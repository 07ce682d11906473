# VQ-KD ViT-B/16 tokenizer with the CLIP ViT-B/16 teacher, as the official
# vqkd_encoder_base_decoder_3x768x12_clip: encoder ViT-B/16 (abs pos emb, no rel bias, no layer
# scale), codebook 8192 x 32 (EMA decay 0.99, k-means init), decoder 3 x 768 over the 14 x 14
# code map, target = CLIP last-layer patch tokens after ln_post @ visual.proj (512-d).
# Encoder and decoder are FastBEiTViT: mmpretrain's BEiTViT with the attention through SDPA
# (same keys; 'BEiTViT' gives the stock one): the VQ-KD step of tools/benchmark.py vqkd against
# the explicit attention, 1.59x on an H100 in bf16 (run g3; 1.96x compiled, g19), 1.03x on a
# 2-core CPU (run I). Written out to be read; the same as beitv2_mm.tokenizers.vqkd_vit_cfg,
# which tests/tokenizers/test_vqkd_tokenizer.py checks for every config's VQ-KD ViT.
vqkd_vit_init = [
    dict(type='TruncNormal', std=0.02, layer='Linear'),
    dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0),
]
vqkd_vit_common = dict(
    type='FastBEiTViT', out_indices=-1, drop_path_rate=0.0, norm_cfg=dict(type='LN', eps=1e-6),
    final_norm=True, out_type='featmap', with_cls_token=True, use_abs_pos_emb=True,
    use_rel_pos_bias=False, use_shared_rel_pos_bias=False, layer_scale_init_value=0.0,
    init_cfg=vqkd_vit_init)

model = dict(
    type='VQKDAlgorithm',
    data_preprocessor=dict(type='SelfSupDataPreprocessor', to_rgb=True),
    tokenizer=dict(
        type='VQKDTokenizer',
        encoder=dict(arch='base', img_size=224, patch_size=16, **vqkd_vit_common),
        decoder=dict(
            arch=dict(embed_dims=768, num_layers=3, num_heads=12, feedforward_channels=3072),
            img_size=14, patch_size=1, **vqkd_vit_common),
        num_codes=8192,
        code_dim=32,
        decay=0.99,
        kmeans_init=True,
        target_dim=512,
        input_range=(0, 255)),
    teacher=dict(
        type='OpenCLIPTeacher',
        # OpenAI CLIP ViT-B/16 uses QuickGELU
        model_name='ViT-B-16-quickgelu',
        checkpoint='checkpoints/teachers/clip_vit-b16_openai.pt',
        input_range=(0, 255)))
