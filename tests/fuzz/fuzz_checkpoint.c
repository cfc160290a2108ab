/* libFuzzer harness for the checkpoint reader: safetensors parse, CRC verification,
 * metadata parsing and (for small configs) restoring into a model. The metadata and
 * restore paths run even when verification fails, since a mutated file almost never
 * passes its CRCs and those parsers must survive any input on their own.
 * Built by bench/fuzz_checkpoint.sh; tests/fuzz/replay.c runs it over the seed corpus
 * in CTest. */
#include <stddef.h>
#include <stdint.h>

#include "loom/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    loom_st_file *f;
    if (loom_st_parse(data, size, "fuzz.safetensors", &f) != LOOM_OK) return 0;
    (void)loom_ckpt_verify(f);
    loom_gpt_config cfg;
    loom_ckpt_state st;
    if (loom_ckpt_read_state(f, &cfg, &st) == LOOM_OK && cfg.vocab_size <= 4096 && cfg.n_embd <= 64 &&
        cfg.n_layer <= 4 && cfg.block_size <= 256) {
        loom_gpt *g;
        loom_adamw opt;
        loom_adamw_config oc = st.optim;
        if (loom_gpt_init(&g, &cfg, 1, 1, 0, "ref") == LOOM_OK) {
            if (loom_adamw_init(&opt, &oc, g->sizes.n_params) == LOOM_OK) {
                (void)loom_ckpt_load(f, g, &opt);
                loom_adamw_free(&opt);
            }
            loom_gpt_free(g);
        }
    }
    loom_st_close(f);
    return 0;
}
