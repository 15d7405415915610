"""Instructions per buffer() call against the list-append floor, noise-free.

Wall-clock ratios on a shared 2-core machine swing with the neighbours' load;
callgrind counts instructions, which do not.  Run each variant with 0 and
with N calls and divide the difference by N:

    for what in floor buffer; do for n in 0 20000; do
        PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
            python bench/buffer_instructions.py $what $n 2>&1 | grep Collected
    done; done
"""

import shutil
import sys
import tempfile

import ml_dash


def main():
    what, calls = sys.argv[1], int(sys.argv[2])
    root = tempfile.mkdtemp(prefix="ml_dash-bench-callgrind-")
    try:
        with ml_dash.Experiment(prefix="bench/api/callgrind", dash_root=root).run as exp:
            train = exp.metrics("train")
            staged = []

            def floor(**fields):
                staged.append(fields)

            if what == "floor":
                for i in range(calls):
                    floor(loss=1.0 / (i + 1), accuracy=0.5)
            else:
                for i in range(calls):
                    train.buffer(loss=1.0 / (i + 1), accuracy=0.5)
            exp.metrics.buffer.log_summary()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
