/// Runs `body` with C argv/argvlen arrays for `args`, as hiredis' *Argv
/// functions take them. All arguments are copied into one buffer so that a
/// batch of thousands costs one allocation; pointers are valid only inside `body`.
func withArgv<R>(_ args: [String], _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R) -> R {
    var total = 0
    for a in args { total += a.utf8.count }
    var bytes = [UInt8]()
    bytes.reserveCapacity(total + 1)
    var lengths = [Int]()
    lengths.reserveCapacity(args.count)
    for a in args {
        let before = bytes.count
        bytes.append(contentsOf: a.utf8)
        lengths.append(bytes.count - before)
    }
    bytes.append(0)
    return bytes.withUnsafeBufferPointer { raw in
        let base = UnsafeRawPointer(raw.baseAddress!).assumingMemoryBound(to: CChar.self)
        var argv = [UnsafePointer<CChar>?]()
        argv.reserveCapacity(args.count)
        var offset = 0
        for len in lengths {
            argv.append(base + offset)
            offset += len
        }
        return argv.withUnsafeMutableBufferPointer { argvBuf in
            lengths.withUnsafeBufferPointer { lenBuf in
                body(Int32(args.count), argvBuf.baseAddress!, lenBuf.baseAddress!)
            }
        }
    }
}
