/* engine_step.c: one engine step. For each model with active jobs: its requests' cancel
 * flags, one sampled token for every decoding slot, prefill chunks for the prefilling slots
 * (within n_chunk tokens per step and model), and one batched forward for all of them.
 * Engine thread only. */
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "engine/engine_priv.h"
#include "kv/kv.h"
#include "model/model.h"
#include "tok/tok.h"

/* ---- one step -------------------------------------------------------------------------- */

/* One engine step is one batched forward (lg_model_forward_batch): every decoding slot
 * contributes its sampled token, every prefilling slot a part of its prompt (within the
 * prefill budget), and each weight matrix is read once for all of them. */
struct eng_batch {
    struct lg_batch_seg seg[ENG_MAX_SLOTS];
    struct eng_slot *slot[ENG_MAX_SLOTS];
    bool prefill[ENG_MAX_SLOTS];
    int n;
};

static void batch_add(struct eng_batch *b, struct eng_slot *s, const int32_t *ids, int64_t n,
                      bool logits, bool prefill)
{
    int i = b->n++;
    b->seg[i] = (struct lg_batch_seg){s->state, ids, n, logits ? LG_LOGITS_LAST : LG_LOGITS_NONE,
                                      NULL};
    b->slot[i] = s;
    b->prefill[i] = prefill;
}

static void batch_drop(struct eng_batch *b, int i)
{
    for (int k = i + 1; k < b->n; k++) {
        b->seg[k - 1] = b->seg[k];
        b->slot[k - 1] = b->slot[k];
        b->prefill[k - 1] = b->prefill[k];
    }
    b->n--;
}

/* Runs the batch; a segment the model refuses (checked before anything runs) fails its job
 * alone and the rest run without it. */
static void batch_run(struct lg_engine *e, struct eng_model *m, struct eng_batch *b)
{
    struct lg_err err = {0};
    int64_t t0 = lg_eng_now_ns();
    while (b->n > 0) {
        int64_t k = 0;
        for (int i = 0; i < b->n; i++)
            if (b->seg[i].mode != LG_LOGITS_NONE)
                b->seg[i].logits = m->blogits + (k++) * m->n_vocab; /* adjacent: one product */
        int bad = -1;
        int64_t tf = lg_eng_now_ns();
        enum lg_status st = lg_model_forward_batch(m->model, m->work, b->seg, b->n, &bad, &err);
        e->prof.forward_ns += lg_eng_now_ns() - tf;
        if (st == LG_OK)
            break;
        if (bad < 0) { /* not one segment's fault: fail them all */
            for (int i = 0; i < b->n; i++) {
                lg_eng_slot_reset(b->slot[i]);
                lg_eng_job_fail(e, b->slot[i]->job, LG_ERR_INTERNAL, err.msg);
            }
            return;
        }
        lg_eng_slot_reset(b->slot[bad]);
        lg_eng_job_fail(e, b->slot[bad]->job,
                        st == LG_ERR_CONTEXT && b->prefill[bad] ? st : LG_ERR_INTERNAL, err.msg);
        batch_drop(b, bad);
    }
    int64_t t1 = lg_eng_now_ns(), dt = t1 - t0;
    for (int i = 0; i < b->n; i++) {
        struct eng_slot *s = b->slot[i];
        const struct lg_batch_seg *g = &b->seg[i];
        memcpy(s->cache_ids + s->n_cache, g->tokens, (size_t)g->n_tok * sizeof *g->tokens);
        s->n_cache += g->n_tok;
        if (g->mode != LG_LOGITS_NONE)
            s->logits = g->logits; /* read by the next step's draw, before the next forward */
        if (b->prefill[i]) {
            struct eng_job *j = s->job;
            e->prof.n_prefill += g->n_tok;
            j->pos += g->n_tok;
            j->prompt_ns += dt;
            if (j->pos == j->n_ids) {
                j->phase = JOB_DECODE;
                if (s->snap) /* the next turn of this chat can come back here */
                    s->snap_pos = lg_kv_snapshot_save(lg_model_state_kv(s->state), s->snap);
            }
        } else {
            e->prof.n_decode++;
        }
    }
    e->prof.after_ns += lg_eng_now_ns() - t1;
}

/* Adds at most max_n prompt tokens of the slot's job to the batch; returns how many. */
static int64_t step_prefill(struct eng_batch *b, struct eng_slot *s, int64_t max_n)
{
    struct eng_job *j = s->job;
    int64_t n = j->n_ids - j->pos;
    if (n > max_n)
        n = max_n;
    batch_add(b, s, j->ids + j->pos, n, j->pos + n == j->n_ids, true);
    return n;
}

/* The first draw of a GRAM_AFTER_THOUGHT job: the grammar's tokens, or <|channel> to think
 * first. */
static enum lg_status mask_grammar_or_thought(void *ctx, uint32_t *allowed, int32_t n_vocab,
                                              struct lg_err *err)
{
    struct eng_job *j = ctx;
    enum lg_status st = lg_grammar_sample_mask(&j->hook, allowed, n_vocab, err);
    if (st == LG_OK && j->mask_extra >= 0 && j->mask_extra < n_vocab)
        allowed[j->mask_extra >> 5] |= 1u << (j->mask_extra & 31);
    return st;
}

/* Samples the slot's next token and, unless the job ends, adds it to the batch. */
static void step_decode(struct lg_engine *e, struct eng_batch *b, struct eng_slot *s)
{
    struct eng_job *j = s->job;
    struct eng_model *m = j->m;
    struct lg_err err = {0};
    if (j->n_gen >= j->max_tokens) {
        lg_eng_job_done(e, j, LG_FINISH_LENGTH);
        return;
    }
    int32_t tok;
    enum lg_status st;
    bool forced = false;
    if (j->in_thought && j->think_budget >= 0 && j->n_thought >= j->think_budget &&
        m->id_chan_close >= 0) {
        tok = m->id_chan_close; /* close the thought channel cleanly */
        forced = true;
        st = LG_OK;
    } else {
        bool first_or = j->n_gen == 0 && j->trigger == GRAM_AFTER_THOUGHT && !j->gram_on &&
                        !j->in_thought && m->id_chan_open >= 0;
        if (first_or) {
            j->mask_extra = m->id_chan_open;
            lg_sampler_set_mask(j->smp, mask_grammar_or_thought, j);
        }
        struct lg_sample_info info;
        bool want = j->req->top_logprobs >= 0 && m->gvocab;
        int64_t t0 = lg_eng_now_ns();
        st = lg_sampler_sample(j->smp, s->logits, &tok, want ? &info : NULL, &err);
        e->prof.sample_ns += lg_eng_now_ns() - t0;
        if (st == LG_OK && want && !lg_tok_is_eog(m->vocab, tok))
            lg_eng_job_logprob(j, m->gvocab, tok, &info);
    }
    if (st != LG_OK) {
        lg_eng_job_fail(e, j, LG_ERR_INTERNAL, err.msg);
        return;
    }
    if (j->n_gen == 0) {
        j->t_first = lg_eng_now_ns();
        /* no thought opened: the answer starts now, under the grammar */
        if (j->trigger == GRAM_AFTER_THOUGHT && !j->gram_on && !j->in_thought &&
            tok != m->id_chan_open && !forced)
            j->gram_on = true;
    }
    j->n_gen++;
    lg_sampler_accept(j->smp, tok);
    if (j->gram_on && !forced) {
        if (lg_grammar_accept_token(j->gst, m->gvocab, tok, &err) != LG_OK)
            j->gram_on = false; /* cannot happen for a masked draw; never wedge the stream */
    }
    if (lg_tok_is_eog(m->vocab, tok)) {
        lg_eng_job_done(e, j, LG_FINISH_STOP);
        return;
    }
    lg_eng_job_token_text(j, tok);
    if (j->stopped) {
        lg_eng_job_done(e, j, LG_FINISH_STOP);
        return;
    }
    /* switch the grammar on or off after this token */
    if (j->trigger == GRAM_AFTER_THOUGHT && !j->gram_on && tok == m->id_chan_close) {
        j->gram_on = true;
    } else if (j->trigger == GRAM_ON_TOOL_CALL) {
        if (!j->gram_on && tok == m->id_call_open) {
            lg_grammar_state_reset(j->gst);
            j->gram_on = true;
        } else if (j->gram_on && lg_grammar_is_finished(j->gst)) {
            j->gram_on = false;
        }
    }
    lg_sampler_set_mask(j->smp, j->gram_on ? lg_grammar_sample_mask : NULL,
                        j->gram_on ? &j->hook : NULL);
    if (s->n_cache >= j->n_ctx) {
        lg_eng_job_done(e, j, LG_FINISH_LENGTH);
        return;
    }
    s->next_tok = tok;
    batch_add(b, s, &s->next_tok, 1, true, false);
}

/* One step of one model: one batched forward for its decoding and prefilling slots. */
static void model_step(struct lg_engine *e, struct eng_model *m)
{
    for (int32_t i = 0; i < m->n_slots; i++) {
        struct eng_job *j = m->slots[i].job;
        if (j && atomic_load(&j->req->cancel))
            lg_eng_job_fail(e, j, LG_ERR_CANCELLED, "cancelled: the client went away");
    }
    struct eng_batch b;
    b.n = 0;
    int64_t t0 = lg_eng_now_ns(), sample0 = e->prof.sample_ns;
    for (int32_t i = 0; i < m->n_slots; i++)
        if (m->slots[i].job && m->slots[i].job->phase == JOB_DECODE)
            step_decode(e, &b, &m->slots[i]);
    e->prof.token_ns += lg_eng_now_ns() - t0 - (e->prof.sample_ns - sample0);
    /* prefill: what the decode tokens leave of the n_chunk rows the batch scratch holds,
     * shared by the prefilling slots in turn (several short prompts start in one step; a long
     * one takes a chunk per step). A slot's part is at most its own cache's chunk: the
     * forward cuts a longer segment there and runs the rest as a sub-batch of its own, a
     * second read of every weight matrix in the same step. Within both limits the whole
     * batch is one sub-batch. */
    int64_t chunk = lg_kv_n_chunk(lg_model_state_kv(m->work)); /* n_chunk, at most n_ctx */
    int64_t budget = chunk - b.n;
    if (budget < chunk / 4 + 1)
        budget = chunk / 4 + 1; /* more decoders than rows: prompts still advance */
    int32_t start = m->rr;
    for (int32_t k = 0; k < m->n_slots && budget > 0; k++) {
        int32_t i = (start + k) % m->n_slots;
        struct eng_slot *s = &m->slots[i];
        if (s->job && s->job->phase == JOB_PREFILL) {
            int64_t kc = lg_kv_n_chunk(lg_model_state_kv(s->state));
            budget -= step_prefill(&b, s, budget < kc ? budget : kc);
            m->rr = (i + 1) % m->n_slots;
        }
    }
    batch_run(e, m, &b);
}

static double ms_per(int64_t ns, int64_t n) { return n ? (double)ns / 1e6 / (double)n : 0.0; }

/* The profile line (LG_ENGINE_PROFILE): milliseconds per step of each phase. */
static void prof_report(struct eng_prof *p)
{
    int64_t n = p->n_steps;
    int64_t rest = p->step_ns - p->forward_ns - p->sample_ns - p->token_ns - p->after_ns -
                   p->stats_ns;
    fprintf(stderr,
            "engine: profile: %lld steps, %.1f decode + %.1f prompt tokens/step; ms/step: "
            "forward %.2f, sample %.2f, token %.2f, after %.2f, stats %.2f, rest %.2f, "
            "between %.2f (forward %.0f%% of the loop)\n",
            (long long)n, (double)p->n_decode / (double)n, (double)p->n_prefill / (double)n,
            ms_per(p->forward_ns, n), ms_per(p->sample_ns, n), ms_per(p->token_ns, n),
            ms_per(p->after_ns, n), ms_per(p->stats_ns, n), ms_per(rest, n),
            ms_per(p->between_ns, n),
            100.0 * (double)p->forward_ns / (double)(p->step_ns + p->between_ns + 1));
    *p = (struct eng_prof){.on = p->on, .t_last = p->t_last};
}

/* One engine step: one batched forward per model that has active jobs. */
void lg_eng_step(struct lg_engine *e)
{
    struct eng_prof *p = &e->prof;
    int64_t t0 = lg_eng_now_ns();
    if (p->t_last)
        p->between_ns += t0 - p->t_last;
    for (int32_t k = 0; k < e->n_loaded; k++)
        if (e->models_loaded[k]->n_active > 0)
            model_step(e, e->models_loaded[k]);
    int64_t t1 = lg_eng_now_ns();
    lg_eng_publish_stats(e);
    p->t_last = lg_eng_now_ns();
    p->stats_ns += p->t_last - t1;
    p->step_ns += p->t_last - t0;
    /* a line every ENG_PROF_STEPS steps, and one when the engine goes idle */
    if (++p->n_steps == ENG_PROF_STEPS || e->n_active == 0) {
        if (p->on)
            prof_report(p);
        else
            *p = (struct eng_prof){.t_last = p->t_last};
    }
    if (e->n_active == 0)
        p->t_last = 0; /* idle time is not "between steps" */
}
