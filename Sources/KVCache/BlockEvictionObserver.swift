/// Lets a lower tier save a block's bytes before the device pool reuses it.
///
/// The manager calls `willEvict(block:key:parent:)`; an observer that has no use for the parent
/// implements only `willEvict(block:key:)`, which the default forwards to.
public protocol BlockEvictionObserver: AnyObject {
    /// Called once per evicted block, before its id is handed to a new owner.
    func willEvict(block: BlockID, key: BlockKey)
    /// Called once per evicted block, before its id is handed to a new owner, with the key of its
    /// parent in the prefix tree (nil for a first block): a tier that keeps the block reports it with
    /// that parent, so a router can rebuild the tree from the tier's events. The parent is still cached.
    func willEvict(block: BlockID, key: BlockKey, parent: BlockKey?)
}

extension BlockEvictionObserver {
    /// Ignores the parent.
    public func willEvict(block: BlockID, key: BlockKey, parent: BlockKey?) { willEvict(block: block, key: key) }
}
