"""clemcore's own `clem` command with its llamacpp backend on a local GGUF file
(run by host/tests/cli/clembench.rs and scripts/check-clembench-differential).

Usage: python clem_llamacpp_local.py LLAMA_CPP_SITE_PACKAGES clem-arguments...

Run with a clembench venv's interpreter (clemcore and the games' needs).
LLAMA_CPP_SITE_PACKAGES is the site-packages folder of the venv that
scripts/llama-cpp-python-venv makes; it goes last on sys.path, so the
clembench venv's own packages win where both have one.

clemcore's llamacpp backend loads weights with `Llama.from_pretrained(
huggingface_id, filename)`, which asks the HuggingFace Hub first. For an
entry whose `huggingface_id` is a local folder this loads
`<folder>/<filename>` with the same keyword arguments instead, offline;
everything else (chat template, generation, culling, records) is
clemcore's and llama-cpp-python's unchanged.
"""

import os
import sys


def main() -> None:
    sys.path.append(sys.argv[1])
    import llama_cpp

    hub_loader = llama_cpp.Llama.from_pretrained

    def from_pretrained(repo_id, filename, *args, **kwargs):
        if os.path.isdir(repo_id) and not args:
            for hub_only in ("additional_files", "local_dir", "local_dir_use_symlinks", "cache_dir", "token"):
                kwargs.pop(hub_only, None)
            return llama_cpp.Llama(model_path=os.path.join(repo_id, filename), **kwargs)
        return hub_loader(repo_id, filename, *args, **kwargs)

    llama_cpp.Llama.from_pretrained = staticmethod(from_pretrained)
    from clemcore.cli import main as clem

    sys.argv = ["clem"] + sys.argv[2:]
    sys.exit(clem())


if __name__ == "__main__":
    main()
