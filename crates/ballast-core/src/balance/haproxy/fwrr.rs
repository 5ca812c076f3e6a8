//! HAProxy `balance roundrobin`: fast weighted round-robin (`lb_fwrr.c`).
//!
//! Each group (active, backup) has three trees: `curr`, holding servers by their next position
//! in the current window, and two weight-ordered trees that take turns as `init` (servers not
//! yet placed in this window) and `next` (servers pushed past it). An eb32 tree with duplicate
//! keys returns equal keys in insertion order; a `(key, sequence)` set reproduces that.

use std::collections::BTreeSet;

use super::{BE_WEIGHT_SCALE, SRV_EWGHT_MAX, SRV_UWGHT_RANGE, Seen, Totals};

type Tree = BTreeSet<(u32, u64, usize)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Curr,
    /// One of the two weight trees, by index.
    Weight(usize),
}

#[derive(Debug, Clone, Default)]
struct Group {
    curr: Tree,
    weight_trees: [Tree; 2],
    init: usize,
    next: usize,
    curr_pos: i64,
    curr_weight: i64,
    next_weight: i64,
}

#[derive(Debug, Clone, Default)]
struct Srv {
    npos: i64,
    lpos: i64,
    rweight: i64,
    /// `lb_tree`: the tree the server belongs to, even while dequeued.
    tree: Option<Where>,
    /// The node as inserted, while it is in a tree.
    node: Option<(u32, u64)>,
}

#[derive(Debug, Clone)]
pub struct Fwrr {
    groups: [Group; 2],
    srv: Vec<Srv>,
    seq: u64,
    initialised: bool,
}

impl Fwrr {
    pub fn new(n: usize) -> Self {
        Self {
            groups: Default::default(),
            srv: vec![Srv::default(); n],
            seq: 0,
            initialised: false,
        }
    }

    pub fn initialised(&self) -> bool {
        self.initialised
    }

    /// `fwrr_init_server_groups`.
    pub fn init(&mut self, seen: &[Seen], backup: &[bool], totals: &Totals) {
        for (g, total) in [(0, totals.tot_wact), (1, totals.tot_wbck)] {
            let grp = &mut self.groups[g];
            *grp = Group {
                init: 0,
                next: 1,
                ..Group::default()
            };
            grp.curr_pos = i64::from(total);
            grp.curr_weight = i64::from(total);
            grp.next_weight = i64::from(total);
        }
        for i in 0..seen.len() {
            if seen[i].usable {
                let g = usize::from(backup[i]);
                let init = self.groups[g].init;
                self.queue_by_weight(g, init, i, seen[i].eweight);
            }
        }
        self.initialised = true;
    }

    fn insert(&mut self, g: usize, tree: Where, i: usize, key: u32) {
        self.seq += 1;
        let node = (key, self.seq, i);
        match tree {
            Where::Curr => self.groups[g].curr.insert(node),
            Where::Weight(t) => self.groups[g].weight_trees[t].insert(node),
        };
        self.srv[i].node = Some((key, self.seq));
        self.srv[i].tree = Some(tree);
    }

    fn queue_by_weight(&mut self, g: usize, t: usize, i: usize, eweight: u32) {
        self.insert(g, Where::Weight(t), i, SRV_EWGHT_MAX.wrapping_sub(eweight));
    }

    /// `fwrr_dequeue_srv`: out of its tree, but `lb_tree` still names it.
    fn dequeue(&mut self, g: usize, i: usize) {
        if let (Some(tree), Some((key, seq))) = (self.srv[i].tree, self.srv[i].node.take()) {
            let node = (key, seq, i);
            match tree {
                Where::Curr => self.groups[g].curr.remove(&node),
                Where::Weight(t) => self.groups[g].weight_trees[t].remove(&node),
            };
        }
    }

    /// `fwrr_queue_srv`.
    fn queue_srv(&mut self, g: usize, i: usize, seen: &[Seen]) {
        let s = seen[i];
        if !s.usable {
            self.srv[i].tree = None;
            return;
        }
        let grp = &self.groups[g];
        let eweight = i64::from(s.eweight);
        let npos = self.srv[i].npos;
        if eweight <= 0 || npos >= 2 * grp.curr_weight || npos >= grp.curr_weight + grp.next_weight
        {
            self.srv[i].npos -= grp.curr_weight;
            let next = grp.next;
            self.queue_by_weight(g, next, i, s.eweight);
        } else {
            let key = (i64::from(SRV_UWGHT_RANGE) * npos
                + (i64::from(SRV_EWGHT_MAX) + self.srv[i].rweight - eweight)
                    / i64::from(BE_WEIGHT_SCALE)) as u32;
            self.insert(g, Where::Curr, i, key);
        }
    }

    /// `fwrr_get_srv`: prepares a server being taken out of its tree.
    fn get_srv(&mut self, g: usize, i: usize) {
        let grp = &self.groups[g];
        match self.srv[i].tree {
            Some(Where::Weight(t)) if t == grp.init => {
                self.srv[i].npos = 0;
                self.srv[i].rweight = 0;
            }
            Some(Where::Weight(t)) if t == grp.next => self.srv[i].npos += grp.curr_weight,
            None => self.srv[i].npos = grp.curr_pos,
            _ => {}
        }
    }

    fn switch_trees(&mut self, g: usize) {
        let grp = &mut self.groups[g];
        std::mem::swap(&mut grp.init, &mut grp.next);
        grp.curr_weight = grp.next_weight;
        grp.curr_pos = grp.curr_weight;
    }

    /// `fwrr_get_server_from_group`.
    fn server_from_group(&mut self, g: usize, seen: &[Seen]) -> Option<usize> {
        let grp = &self.groups[g];
        let s1 = grp.curr.first().map(|&(_, _, i)| i);
        if let Some(s) = s1
            && seen[s].eweight > 0
            && self.srv[s].npos <= grp.curr_pos
        {
            return Some(s);
        }
        if let Some(&(_, _, s2)) = grp.weight_trees[grp.init].first()
            && seen[s2].eweight > 0
        {
            self.srv[s2].npos = 0;
            self.srv[s2].rweight = 0;
            return Some(s2);
        }
        s1
    }

    /// `fwrr_update_position`.
    fn update_position(&mut self, g: usize, i: usize, eweight: u32) {
        if eweight == 0 {
            return;
        }
        let (curr_pos, next_weight) = (self.groups[g].curr_pos, self.groups[g].next_weight);
        let e = i64::from(eweight);
        let s = &mut self.srv[i];
        if s.npos == 0 {
            s.npos = curr_pos;
        }
        s.lpos = s.npos;
        s.npos += next_weight / e;
        s.rweight += next_weight % e;
        if s.rweight >= e {
            s.rweight -= e;
            s.npos += 1;
        }
    }

    /// `fwrr_get_next_server`, with no server to avoid.
    pub fn next_server(&mut self, seen: &[Seen], totals: &Totals) -> Option<usize> {
        let g = if totals.srv_act > 0 {
            0
        } else if let Some(f) = totals.fbck {
            return Some(f);
        } else if totals.srv_bck > 0 {
            1
        } else {
            return None;
        };
        let mut switched = false;
        let mut full = Vec::new();
        let mut picked = None;
        loop {
            let grp = &mut self.groups[g];
            if grp.curr_weight == 0 {
                grp.curr_pos = grp.next_weight;
                grp.curr_weight = grp.next_weight;
            }
            let srv = loop {
                if let Some(s) = self.server_from_group(g, seen) {
                    break Some(s);
                }
                if switched {
                    break None;
                }
                switched = true;
                self.switch_trees(g);
            };
            let Some(srv) = srv else { break };
            self.update_position(g, srv, seen[srv].eweight);
            self.dequeue(g, srv);
            self.groups[g].curr_pos += 1;
            if !seen[srv].full() {
                picked = Some(srv);
                break;
            }
            full.push(srv);
        }
        if let Some(p) = picked {
            self.queue_srv(g, p, seen);
        }
        // The C code chains saturated servers and requeues from the last one.
        for &f in full.iter().rev() {
            if switched {
                let init = self.groups[g].init;
                self.queue_by_weight(g, init, f, seen[f].eweight);
            } else {
                self.queue_srv(g, f, seen);
            }
        }
        picked
    }

    /// The state and weight callbacks (`fwrr_set_server_status_up/down`,
    /// `fwrr_update_server_weight`) for server `i`, which was `was` and is now `seen[i]`.
    pub fn update(&mut self, i: usize, was: Seen, seen: &[Seen], backup: &[bool]) {
        let g = usize::from(backup[i]);
        let now = seen[i];
        match (was.usable, now.usable) {
            (false, false) => {}
            (true, false) => {
                self.groups[g].next_weight -= i64::from(was.eweight);
                self.dequeue(g, i);
                self.srv[i].tree = None;
            }
            (false, true) => {
                self.groups[g].next_weight += i64::from(now.eweight);
                self.get_srv(g, i);
                let grp = &self.groups[g];
                self.srv[i].npos = grp.curr_pos
                    + (grp.next_weight + grp.curr_weight - grp.curr_pos) / i64::from(now.eweight);
                self.queue_srv(g, i, seen);
            }
            (true, true) => {
                let grp = &mut self.groups[g];
                grp.next_weight = grp.next_weight - i64::from(was.eweight) + i64::from(now.eweight);
                let init = grp.init;
                match self.srv[i].tree {
                    Some(Where::Weight(t)) if t == init => {
                        self.dequeue(g, i);
                        self.queue_by_weight(g, init, i, now.eweight);
                    }
                    None => {
                        self.dequeue(g, i);
                        self.get_srv(g, i);
                        let grp = &self.groups[g];
                        self.srv[i].npos = grp.curr_pos
                            + (grp.next_weight + grp.curr_weight - grp.curr_pos)
                                / i64::from(now.eweight.max(1));
                        self.queue_srv(g, i, seen);
                    }
                    _ => {
                        self.get_srv(g, i);
                        let grp = &self.groups[g];
                        if now.eweight > 0 {
                            let prev_next = self.srv[i].npos;
                            let step = grp.next_weight / i64::from(now.eweight);
                            let s = &mut self.srv[i];
                            s.npos = s.lpos + step;
                            s.rweight = 0;
                            if s.npos > prev_next {
                                s.npos = prev_next;
                            }
                            if s.npos < grp.curr_pos + 2 {
                                s.npos = grp.curr_pos + step;
                            }
                        } else {
                            self.srv[i].npos = grp.curr_pos + grp.curr_weight;
                        }
                        self.dequeue(g, i);
                        self.queue_srv(g, i, seen);
                    }
                }
            }
        }
    }
}
