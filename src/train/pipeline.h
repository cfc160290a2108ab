/* Pipeline parallelism's plan: which layers each stage runs (balanced by the
 * description's cost, or as --pp-layers says) and each stage's schedule, a list of
 * actions (forward or backward of micro-batch m) that one executor (step.c) runs, the
 * sends and receives following from it. A schedule is checked once, by running every
 * stage's list against the others (a stage waits only for data a neighbour has yet to
 * produce), so a list that could deadlock is refused before any rank starts. */
#ifndef LOOM_TRAIN_PIPELINE_H
#define LOOM_TRAIN_PIPELINE_H

#include "loom/train.h"

/* the schedules (loom_pp_schedule_parse in loom/train.h gives them from their names) */
typedef enum loom_pp_kind { LOOM_PP_1F1B, LOOM_PP_GPIPE, LOOM_PP_KINDS } loom_pp_kind;
const char *loom_pp_kind_name(int kind);

typedef struct loom_pp_action {
    char op;   /* 'F' or 'B' */
    int micro; /* the stage's micro-batch index, 0 .. m-1 */
} loom_pp_action;

#define LOOM_PP_MAX LOOM_PP_MAX_STAGES
typedef struct loom_pp_plan {
    int kind, stages, micro;       /* schedule, stages p, micro-batches m per step */
    int l0[LOOM_PP_MAX + 1];       /* stage s runs layers [l0[s], l0[s+1]) */
    int sets[LOOM_PP_MAX];         /* activation sets stage s keeps: its most micro-batches in flight */
} loom_pp_plan;

/* Stage s's list (2m actions) into out. */
int loom_pp_schedule(int kind, int p, int m, int s, loom_pp_action *out);
/* Runs the p stages' lists (stage s's 2m actions at a + s*2m) against each other: a
 * stage's next action goes when what it receives has been produced (a forward: the
 * previous stage's forward of that micro-batch; a backward: its own forward and the next
 * stage's backward). Returns 0 when every list runs to its end (each micro-batch's
 * forward and backward once), with the most micro-batches each stage holds at once in
 * sets[s]; 1 when some list can never finish (a deadlock) or is malformed. */
int loom_pp_lists_run(int p, int m, const loom_pp_action *a, int *sets);
/* Makes the plan: layer split (layers: stage sizes from --pp-layers, or NULL to balance
 * the cost of the layers and of the LM head on the last stage), each stage's list run
 * against the others, the activation sets each needs. */
loom_status loom_pp_plan_make(loom_pp_plan *pl, const loom_gpt_config *cfg, int T, int p, int m, int kind,
                              const char *layers);
/* Stage s's part of the model, as loom_gpt_init_part takes it */
loom_stage loom_pp_stage(const loom_pp_plan *pl, int s);

#endif
