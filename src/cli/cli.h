/* Shared pieces of the `loom` command line: flag value parsing with one clear error line
 * per bad value, and the model flags every command takes. */
#ifndef LOOM_CLI_H
#define LOOM_CLI_H

#include <getopt.h>

#include "loom/data.h"
#include "loom/dist.h"
#include "loom/io.h"
#include "loom/model.h"

int cli_fail(const char *cmd); /* prints "loom <cmd>: error: <message>", returns 1 */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The end of a failed command of every rank: with several ranks, an error all reached
 * alike (loom_dist_failed_together) is printed by rank 0 and every rank exits 1; any
 * other names its rank and ends the job. Finalizes MPI; returns the exit status. */
int cli_fail_dist(const char *cmd, const loom_dist *d);
/* A bad flag value (the recorded message): prints it with the --help hint, returns 2. */
int cli_bad_value(const char *cmd);

/* getopt_long over the long options `opts` (codes below CLI_MAX_OPT) that also refuses
 * a flag given twice: returns what getopt_long does, or CLI_DUPLICATE with the message
 * recorded. seen: CLI_MAX_OPT zeroed bytes; seen[code] = CLI_REPEATABLE lets that flag
 * repeat. */
enum { CLI_MAX_OPT = 1100, CLI_DUPLICATE = CLI_MAX_OPT, CLI_REPEATABLE = 255 };
int cli_getopt(int argc, char **argv, const struct option *opts, unsigned char *seen);

/* Each returns 0, or records "FLAG: 'VALUE' is not ..." and returns -1. */
int cli_int(const char *flag, const char *s, long min, long max, long *out);
int cli_float(const char *flag, const char *s, double min, double max, double *out);
int cli_onoff(const char *flag, const char *s, int *out);
int cli_data_format(const char *s, loom_data_format *out); /* --data-format auto|shard|u16 */

/* Model flags shared by train/eval/export: --model and its overrides. */
enum { CLI_MODEL_OPT_BASE = 1000 };
#define CLI_MODEL_OPTIONS                                                   \
    {"model", required_argument, 0, CLI_MODEL_OPT_BASE + 0},                \
    {"n-layer", required_argument, 0, CLI_MODEL_OPT_BASE + 1},              \
    {"n-embd", required_argument, 0, CLI_MODEL_OPT_BASE + 2},               \
    {"n-head", required_argument, 0, CLI_MODEL_OPT_BASE + 3},               \
    {"vocab-size", required_argument, 0, CLI_MODEL_OPT_BASE + 4},           \
    {"block-size", required_argument, 0, CLI_MODEL_OPT_BASE + 5},            \
    {"n-kv-head", required_argument, 0, CLI_MODEL_OPT_BASE + 6},             \
    {"ffn-dim", required_argument, 0, CLI_MODEL_OPT_BASE + 7},               \
    {"arch", required_argument, 0, CLI_MODEL_OPT_BASE + 8},                  \
    {"rope-theta", required_argument, 0, CLI_MODEL_OPT_BASE + 9},            \
    {"tie", required_argument, 0, CLI_MODEL_OPT_BASE + 10}
#define CLI_MODEL_HELP                                                                          \
    "  --model NAME         preset: tiny, small, gpt2, gpt2-medium, gpt2-large, gpt2-xl (GPT-2);\n"      \
    "                       llama-tiny, smollm-135m, tinyllama-1.1b, llama-3.2-1b (Llama)\n"           \
    "  --n-layer N, --n-embd N, --n-head N, --vocab-size N, --block-size N\n"                    \
    "  --arch gpt2|llama, --n-kv-head N, --ffn-dim N, --rope-theta X, --tie on|off\n"           \
    "                       override any field of the preset\n"

typedef struct cli_model {
    const char *preset;
    int preset_given;  /* --model was on the command line */
    long overrides[7]; /* -1 = not given; order: layer, embd, head, vocab, block, kv heads, ffn */
    int arch, tie;     /* -1 = not given */
    double rope_theta; /* < 0: not given */
} cli_model;
void cli_model_defaults(cli_model *m, const char *preset);
/* Handles option `c` if it is a model option: returns 1 (handled), 0 (not one), -1 (error). */
int cli_model_opt(cli_model *m, int c, const char *arg);
/* Builds the config from the preset and overrides; -1 on error (message set). */
int cli_model_config(const cli_model *m, loom_gpt_config *cfg);

/* With --init-from the file decides the model: refuses --model and the overrides (and
 * an --n-head that differs from the file's, file_cfg). -1 with the message recorded. */
int cli_model_check_init(const cli_model *m, const char *init_from, const loom_gpt_config *file_cfg);

/* The getopt loop's error cases ('?' unknown flag, ':' missing value; getopt's own
 * messages are off via opterr = 0): one line naming the flag. Returns 2. */
int cli_bad_flag(const char *cmd, const char *arg, int missing_value);
#define CLI_GETOPT_ERRORS(cmd, argv)                                           \
    case '?': return cli_bad_flag(cmd, argv[optind - 1], 0);                   \
    case ':': return cli_bad_flag(cmd, argv[optind - 1], 1);                   \
    case CLI_DUPLICATE: return cli_bad_value(cmd)

/* The GPT-2 rank file: data/gpt2/r50k_base.tiktoken in the working directory, else
 * beside the binary (BUILD/../data/gpt2/...), else the relative path (whose error will
 * name it). */
const char *cli_default_tokenizer(void);

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_prep(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif

/* The model a command works on: the file `init_from` if given (its config comes from
 * the file), else a fresh GPT-2 initialisation of the flags' config with `seed`.
 * Capacity for micro-batches of B x T (T = 0: the block size). 0, or on error the
 * exit code: 2 for a flag the model refuses, 1 otherwise; cli_load_failed prints the
 * error and returns it. */
int cli_load_failed(const char *cmd, int rc);
int cli_load_model(const cli_model *m, const char *init_from, uint64_t seed, int B, int T,
                   loom_gpt **out);
