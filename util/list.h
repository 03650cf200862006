/*
 * Intrusive doubly linked lists with a head that is itself a node: an empty
 * list points at itself, so insert and remove never test for NULL.
 */
#ifndef SPINDLE_UTIL_LIST_H
#define SPINDLE_UTIL_LIST_H

#include <stdbool.h>
#include "util/osdep.h"

struct list_node {
    struct list_node *next, *prev;
};

#define LIST_HEAD_INIT(name) { &(name), &(name) }

static inline void list_init(struct list_node *h)
{
    h->next = h->prev = h;
}

static inline bool list_empty(const struct list_node *h)
{
    return h->next == h;
}

static inline void list_insert_between(struct list_node *n, struct list_node *prev,
                                       struct list_node *next)
{
    n->prev = prev;
    n->next = next;
    prev->next = n;
    next->prev = n;
}

static inline void list_add_tail(struct list_node *h, struct list_node *n)
{
    list_insert_between(n, h->prev, h);
}

static inline void list_add_head(struct list_node *h, struct list_node *n)
{
    list_insert_between(n, h, h->next);
}

/* Insert n just before pos. */
static inline void list_add_before(struct list_node *pos, struct list_node *n)
{
    list_insert_between(n, pos->prev, pos);
}

static inline void list_del(struct list_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}

/* Whether n is on some list (nodes are self-linked when off every list). */
static inline bool list_linked(const struct list_node *n)
{
    return n->next != n;
}

#define list_entry(ptr, type, member) container_of(ptr, type, member)

#define list_first(h, type, member) \
    (list_empty(h) ? NULL : list_entry((h)->next, type, member))

#define list_for_each(pos, h, member)                                        \
    for (pos = list_entry((h)->next, __typeof__(*pos), member);              \
         &pos->member != (h);                                                \
         pos = list_entry(pos->member.next, __typeof__(*pos), member))

#define list_for_each_safe(pos, tmp, h, member)                              \
    for (pos = list_entry((h)->next, __typeof__(*pos), member),              \
         tmp = list_entry(pos->member.next, __typeof__(*pos), member);       \
         &pos->member != (h);                                                \
         pos = tmp, tmp = list_entry(tmp->member.next, __typeof__(*pos), member))

#endif
