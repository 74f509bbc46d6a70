// etcdlock: distributed locks on etcd v3. Include this header for all of the API.
#pragma once

#include "etcdlock/deadlock.h"
#include "etcdlock/election.h"
#include "etcdlock/error.h"
#include "etcdlock/lock.h"
#include "etcdlock/lock_event.h"
#include "etcdlock/lock_info.h"
#include "etcdlock/lock_manager.h"
#include "etcdlock/log.h"
#include "etcdlock/metrics.h"
#include "etcdlock/multi_lock.h"
#include "etcdlock/options.h"
#include "etcdlock/semaphore.h"
#include "etcdlock/session_state.h"
#include "etcdlock/shared_lock.h"
#include "etcdlock/subscription.h"
#include "etcdlock/version.h"
