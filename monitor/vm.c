/* The monitor around spindle-vm's machine; see vm.h. */
#include "monitor/vm.h"

#include "monitor/monitor.h"

static int vm_start(struct kvm_machine *m, struct err *err)
{
    mon_init();
    for (unsigned i = 0; i < m->cfg->nr_qmp; i++) {
        if (!mon_server_listen(m->cfg->qmp[i], NULL, err)) {
            err_prepend(err, "-qmp: ");
            return -EINVAL;
        }
    }
    return 0;
}

static void vm_stop(struct kvm_machine *m)
{
    mon_cleanup();
}

const struct kvm_vm_hooks mon_vm_hooks = {
    .start = vm_start,
    .stop = vm_stop,
};
