"""Demo: BEiT v2 MIM of a tiny ViT on the synthetic ImageNet layout (CPU, ~4 min).

Same machinery as ``configs/beitv2_vitb_mim.py`` at toy size (data, student, optimisation
and runtime shared by the MIM demos: ``configs/demo/_base_/mim_demo.py``), patch aggregation
over layer 3 + last [CLS] (2 layers), frozen VQ-KD-style tokenizer with a
512 x 8 codebook (``VQKDTokenizer``, encoder only). ``model.target_generator.checkpoint``
takes the tokenizer trained by ``configs/demo/vqkd_vit-tiny_synthetic.py``
(tools/run_suite.py passes it, e.g. work_dirs/vqkd_vit-tiny_synthetic/iter_150.pth); left at
None the tokenizer keeps random weights, which still give a learnable (fixed) target.
"""
# which method made the checkpoints (downstream results files and the leaderboard read it)
pretrain_method = 'beitv2'
_base_ = ['_base_/mim_demo.py']

model = dict(
    # layer 3 (early states) and layer 4, unnormalised: the neck's shared norm normalises both
    backbone=dict(out_indices=[-2, -1], final_norm=False),
    neck=dict(type='BEiTV2AggregationNeck', num_layers=2, early_layers=3,
              backbone_arch={{_base_.arch}}, layer_scale_init_value=0.1, attn_impl='sdpa'),
    head=dict(type='BEiTV2Head', embed_dims={{_base_.embed_dims}},
              num_embed={{_base_.num_tokens}}, loss=dict(type='CrossEntropyLoss')),
    # the tokenizer architecture of configs/demo/vqkd_vit-tiny_synthetic.py, encoder only
    target_generator=dict(
        type='VQKDTokenizer',
        encoder=dict(
            type='FastBEiTViT',
            arch=dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=256),
            img_size={{_base_.img_size}}, patch_size={{_base_.patch_size}}, out_indices=-1,
            final_norm=True,
            norm_cfg=dict(type='LN', eps=1e-6), out_type='featmap', use_abs_pos_emb=True,
            use_rel_pos_bias=False, use_shared_rel_pos_bias=False, layer_scale_init_value=0.),
        decoder=None,
        num_codes={{_base_.num_tokens}},
        code_dim=8,
        kmeans_init=False,
        input_range=(-1, 1),
        frozen=True,
        checkpoint=None))

# 2400 iterations (24 epochs of the demo set; max_iters of configs/demo/_base_/mim_demo.py), the
# same for every MIM demo. Along one 1000-iteration BEiT v2 run on the demo set, a converged linear
# probe (LBFGS) of the [CLS] token gave 54% at iteration 200, 59% at 400, 62% at 600 and 65% at
# 1000. The fine-tune column needs longer: fine-tuning (configs/demo/finetune_vit-tiny_synthetic.py,
# seeds 0-3) from random init gave 73.0 / 73.8 / 75.2 / 68.0% top-1; from this BEiT v2 after 800
# iterations 73.8% (seed 0), after 1600 77.0 / 77.4 / 75.6 / 75.6%, after 2400 79.6 / 82.2 / 79.2
# / 77.0% (2026-11-23, before commit d1f155e). With the official numerics of d1f155e (single FFN
# drop path, fine-tune head init x 0.001, pretraining init, mask top-up, PIL crops), demo run of
# 2026-11-23 06:29 UTC and seeds 1-3 after it: random init 79.6 / 81.4 / 80.2 / 79.4, BEiT v2 after
# 2400 iterations 79.8 / 83.4 / 80.4 / 83.2. With the MIM demos' shared recipe (a342895: the full
# configs' weight-decay exemptions, fused AdamW), demo run of 2026-11-24 20:49 UTC and seeds 1-3
# after it (randomness.seed=N): random init 79.8 / 81.2 / 80.2 / 79.6, BEiT v2 83.6 / 83.8 / 80.8 /
# 85.2 (ahead on every seed, by 0.6-5.6 points; means 83.35 and 80.2).
