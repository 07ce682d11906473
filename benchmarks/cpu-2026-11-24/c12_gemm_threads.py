"""Run c12: would running the frozen tokenizer beside the student, one core each, beat running
them one after the other on both cores? Only if a GEMM on two threads is well below twice one
thread's rate. ViT-B MLP GEMMs (788 x 768 -> 3072 -> 768, the shapes of 4 images x 197 tokens):
the rate of one stream on 2 threads, of two streams in two Python threads with 1 thread each
(torch releases the GIL in its ops), and of one stream on 1 thread.

    OMP_NUM_THREADS=2 python benchmarks/cpu-2026-11-24/c12_gemm_threads.py [ROUNDS]
"""
import sys
import threading
import time

import torch
import torch.nn.functional as F

D, HIDDEN, ROWS, LAYERS = 768, 3072, 788, 20
FLOPS = LAYERS * 2 * 2 * ROWS * D * HIDDEN  # one stream: LAYERS x (fc1 + fc2)

torch.manual_seed(0)
x = torch.randn(ROWS, D)
fc1, fc2 = torch.randn(HIDDEN, D), torch.randn(D, HIDDEN)


def stream():
    y = x
    for _ in range(LAYERS):
        y = F.linear(F.linear(y, fc1), fc2)
    return y


def two_streams_two_threads_each():
    torch.set_num_threads(2)
    start = time.perf_counter()
    stream()
    stream()
    return 2 * FLOPS / (time.perf_counter() - start)


def two_streams_side_by_side():
    def one():
        torch.set_num_threads(1)  # per OS thread (OpenMP's and MKL's thread-local settings)
        stream()
    workers = [threading.Thread(target=one) for _ in range(2)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return 2 * FLOPS / (time.perf_counter() - start)


def one_stream_one_thread():
    torch.set_num_threads(1)
    start = time.perf_counter()
    stream()
    return FLOPS / (time.perf_counter() - start)


if __name__ == '__main__':
    stream()  # warm-up
    print('GFLOP/s: one after the other on 2 threads | side by side, 1 thread each | '
          'one stream on 1 thread')
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
        rates = (two_streams_two_threads_each(), two_streams_side_by_side(),
                 one_stream_one_thread())
        torch.set_num_threads(2)
        print(' | '.join(f'{r / 1e9:.0f}' for r in rates))
