/* Model files: save a model as safetensors with Hugging Face names and layouts (GPT-2 or Llama)
 * (+ config.json in GPT2Config form), and load one back (ours or Hugging Face's). */
#ifndef LOOM_IO_H
#define LOOM_IO_H

#include "loom/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads the config of a model file: V, block size, C and L from the tensor shapes;
 * n_head from the file's metadata, else from config.json beside it, else from
 * `fallback->n_head` when it is > 0 (the caller's --n-head; 0: not given, an error
 * that asks for it). */
loom_status loom_model_file_config(const char *path, const loom_gpt_config *fallback,
                                   loom_gpt_config *cfg);
/* Copies the weights of a model file into g (shapes must match g's config) and refuses
 * a non-finite weight, naming the tensor. Accepts
 * F32, F16 and BF16 tensors, names with or without "transformer.", and ignores extra
 * tensors (attention-mask buffers, lm_head.weight tied to wte). */
loom_status loom_model_load(loom_gpt *g, const char *path);
/* Writes g's parameters to path (safetensors, F32) with the config in __metadata__. */
loom_status loom_model_save(const loom_gpt *g, const char *path);
/* The tensors of a pipeline stage in the whole model's layout (each tensor whole, at its
 * full_offset - dst_base of dst), from the parameter buffers of the stage's tensor-
 * parallel ranks (split: one of them), part[r] as rank r holds it. */
void loom_model_parts_to_full(const loom_gpt *split, const float *const *part, float *dst, size_t dst_base);
/* Writes a Hugging Face GPT2Config config.json for cfg. */
loom_status loom_model_write_hf_config(const loom_gpt_config *cfg, const char *path);

#ifdef __cplusplus
}
#endif
#endif
